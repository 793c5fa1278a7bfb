"""Asking Cedar about one request and reading its answer, at the least cost per decision.

cedarpy's public ``is_authorized`` wraps its Rust call for general use: it makes a batch of one,
then parses Cedar's JSON answer (with per-call timing metrics tether never reads) into result
objects. On tether's hot path that wrapper cost about as much as Cedar's own evaluation
(``bench/profile_authorize.py --steps``), so the engine asks through :class:`Cedar`:

- :meth:`Cedar.ask` calls the extension's single-request entry directly, with the pre-parsed
  policy set and entities handles and the context already JSON text, and returns Cedar's answer
  as text. The entry is cedarpy's own (``cedarpy._internal``, behind its public wrapper), so it
  is used only when it answers a probe exactly as the public function does; otherwise, e.g. after
  a cedarpy release that changed it, the public function is used and only speed is lost.
- :func:`answer_key` is that text without its ``metrics`` member: what Cedar decided, the
  determining policies and the errors, in Cedar's order, and nothing else. Folding is a pure
  function of it, so :class:`~tether.policy.index.CompiledSubset` memoizes the folded outcome
  on it (Cedar is still asked on every call; only reading its answer is skipped).
- :func:`parse` reads the answer into a :class:`CedarAnswer` when the memo does not hold it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

import cedarpy

#: The last member of the extension's answer: per-call timings, which differ on every call.
_METRICS: Final = ',"metrics":'
#: What may follow it for the key to hold the whole rest of the answer: numbers only.
_METRICS_TAIL: Final = re.compile(r',"metrics":\{(?:"[a-z_]+":\d+,?)*\}\}')


class CedarAnswer(NamedTuple):
    """Cedar's answer to one request: ``Allow``/``Deny``, the ids of the determining policies
    (``reasons``) and the evaluation errors, each in Cedar's order."""

    decision: str
    reasons: tuple[str, ...]
    errors: tuple[str, ...]


def parse(raw: str) -> CedarAnswer:
    """Read the extension's answer text (see :meth:`Cedar.ask`)."""
    answer = json.loads(raw)
    diagnostics = answer.get("diagnostics", {})
    return CedarAnswer(
        answer["decision"],
        tuple(diagnostics.get("reason", ())),
        tuple(diagnostics.get("errors", ())),
    )


def answer_key(raw: str) -> str | None:
    """``raw`` without its metrics: the part of the answer a fold reads, or ``None`` when the
    text is not shaped as expected (then nothing may be memoized on it)."""
    at = raw.rfind(_METRICS)
    if at < 0:
        return raw
    # INVARIANT: only numbers are dropped; any other member after them keeps it unmemoizable.
    return raw[:at] if _METRICS_TAIL.fullmatch(raw, at) else None


def _public(request: Mapping[str, Any], policies: Any, entities: Any) -> str:
    """The same answer text through cedarpy's public function."""
    result = cedarpy.is_authorized(dict(request), policies, entities)
    diagnostics = result.diagnostics
    return json.dumps(
        {
            "decision": result.decision.value,
            "diagnostics": {"reason": diagnostics.reasons, "errors": diagnostics.errors},
        },
        separators=(",", ":"),
    )


_PROBE_POLICIES: Final = (
    '@id("p") permit(principal, action, resource) when { context.x == 1 };\n'
    '@id("f") forbid(principal, action, resource) when { context.x == 2 };\n'
    '@id("e") forbid(principal, action, resource) when { context.x.y == 3 };\n'
)
_PROBES: Final = ('{"x":1}', '{"x":2}', '{"x":"s"}', "{}")


def _probe(extension: Any) -> bool:
    """Does the extension's entry answer every probe as the public function does?"""
    try:
        policies = cedarpy.PolicySet.from_str(_PROBE_POLICIES)
        entities = cedarpy.Entities.from_json_str("[]")
        for context in _PROBES:
            request = {
                "principal": {"type": "Agent", "id": "a"},
                "action": {"type": "Action", "id": "read"},
                "resource": {"type": "Tool", "id": "t"},
                "context": context,
            }
            fast = extension(request, policies, entities._inner)
            if parse(fast) != parse(_public(request, policies, entities)):
                return False
            if answer_key(fast) is None:
                return False
    except Exception:
        return False
    return True


class Cedar:
    """How an engine asks Cedar: the extension's entry when it passes the probe.

    ``direct=False`` always takes the public function (the fallback, tested against the
    direct entry)."""

    def __init__(self, *, direct: bool = True) -> None:
        internal = getattr(cedarpy, "_internal", None)
        extension = getattr(internal, "is_authorized", None)
        self.direct = direct and extension is not None and _probe(extension)
        self._extension = extension

    def ask(self, request: Mapping[str, Any], policies: Any, entities: Any) -> str:
        """Cedar's answer to ``request`` (its ``context`` JSON text) as JSON text.

        ``policies`` is a ``cedarpy.PolicySet``, ``entities`` a ``cedarpy.Entities`` handle."""
        if self.direct:
            extension = self._extension
            assert extension is not None
            text: str = extension(request, policies, entities._inner)
            return text
        return _public(request, policies, entities)

"""Index policies by action kind and tool so each decision evaluates only those that can apply.

Each policy's head (read at load, :mod:`tether.policy.meta`) puts it in buckets:

    resource == Tool::"x"            specific[action][x]   for each action kind it can match
    anything else (unconstrained,    general[action]       for each action kind it can match
    ``in``, ``is``)

A request for (action, tool) evaluates ``general[action] + specific[action][tool]``. Dropping the
other policies cannot change Cedar's answer: a policy whose head does not match the request is
not satisfied and its conditions are never evaluated, so it neither decides nor errors. (A
property test holds the subset to the full set's decisions.)

Each subset is compiled once into a pre-parsed ``cedarpy.PolicySet`` whose policy ids are
tether's own (built from the EST), lazily, on first use, and cached. Tools with no specific policy
share their action's general subset, so the cache holds at most one entry per (action, tool) that
a policy names, plus six; it is bounded anyway (oldest entries dropped first).

Each subset also remembers, per (action, tool), the outcome each of Cedar's answers folded into
(:func:`tether.policy.answer.answer_key`; at most :data:`FOLD_MEMO` of them, errorless answers
only). It lives and dies with the subset, so with the snapshot: a reload never sees an outcome
folded from the policies it replaced. A snapshot also remembers the outcome of each whole request
asked before (:class:`DecidedMemo`), so a request asked again is not put to Cedar at all.

Observe-mode policies (``@mode("observe")``) are never in the enforcing index: a snapshot keeps
them in a second index (``observed=True``) whose subsets evaluate every policy as a permit, so
one Cedar call lists each one that is satisfied (:meth:`PolicyMeta.est_for_observation`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any, Final, Generic, TypeVar

import cedarpy

from tether.core.scope import ActionKind
from tether.policy.context import NO_REFS, ContextRefs
from tether.policy.meta import Effect, PolicyMeta
from tether.service.ports import PolicyOutcome

DEFAULT_CACHE_SIZE: Final = 4096
#: Folded outcomes one subset remembers (answers differ by tool and by which policies decided).
FOLD_MEMO: Final = 256
#: (action, tool, Cedar's answer without its metrics)
FoldKey = tuple[ActionKind, str, str]
#: Outcomes one snapshot remembers per whole request (:class:`DecidedMemo`).
DECIDED_MEMO: Final = 4096
#: The longest context text a remembered request may hold (a longer one is asked every time).
DECIDED_CONTEXT_CHARS: Final = 2048
#: (action, tool, agent, the context's JSON text or "" for none)
DecidedKey = tuple[ActionKind, str, str, str]


K = TypeVar("K")
V = TypeVar("V")


class BoundedMemo(Generic[K, V]):
    """Values remembered by key, at most ``size`` of them, the oldest dropped first. Reads take
    no lock; writes take one, so threads deciding at once never lose the bound."""

    __slots__ = ("_lock", "_size", "_values")

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def remember(self, key: K, value: V) -> None:
        with self._lock:
            while len(self._values) >= self._size:
                del self._values[next(iter(self._values))]
            self._values[key] = value

    def __len__(self) -> int:
        return len(self._values)


def _policy_set(entries: Iterable[tuple[str, str]]) -> Any:
    """A ``cedarpy.PolicySet`` from ``(policy id, EST JSON)`` pairs, keeping tether's ids."""
    body = ",".join(f"{json.dumps(pid)}:{est}" for pid, est in entries)
    text = f'{{"staticPolicies":{{{body}}},"templates":{{}},"templateLinks":[]}}'
    return cedarpy.PolicySet.from_json_str(text)


class CompiledSubset:
    """The policies one (action, tool) evaluates, ready for Cedar.

    ``evaluation`` evaluates approval forbids as permits (see
    :meth:`PolicyMeta.est_for_evaluation`), or, for observe-mode policies (``observing``), every
    policy as a permit; ``preview`` (built on first use) holds the permits and hard forbids only,
    for partial evaluation at task open.
    """

    __slots__ = ("_folded", "_lock", "_preview", "by_id", "evaluation", "policies", "refs")

    def __init__(self, policies: tuple[PolicyMeta, ...], *, observing: bool = False) -> None:
        self.policies = policies
        self.by_id: dict[str, PolicyMeta] = {p.policy_id: p for p in policies}
        refs = NO_REFS
        for p in policies:
            refs = refs.union(p.refs)
        self.refs: ContextRefs = refs
        self.evaluation: Any = (
            _policy_set(
                (p.policy_id, p.est_for_observation() if observing else p.est_for_evaluation())
                for p in policies
            )
            if policies
            else None
        )
        self._preview: Any = None
        self._lock = threading.Lock()
        self._folded: BoundedMemo[FoldKey, PolicyOutcome] = BoundedMemo(FOLD_MEMO)

    @property
    def is_empty(self) -> bool:
        return not self.policies

    @property
    def preview(self) -> Any:
        if self._preview is None:
            with self._lock:
                if self._preview is None:
                    self._preview = _policy_set(
                        (p.policy_id, p.est_json) for p in self.policies if not p.is_approval_forbid
                    )
        return self._preview

    def folded(self, key: FoldKey) -> PolicyOutcome | None:
        """The outcome this answer folded into before, if remembered."""
        return self._folded.get(key)

    def remember(self, key: FoldKey, outcome: PolicyOutcome) -> None:
        """Remember ``outcome`` for ``key``, dropping the oldest beyond :data:`FOLD_MEMO`."""
        self._folded.remember(key, outcome)

    @property
    def permit_count(self) -> int:
        return sum(1 for p in self.policies if p.effect is Effect.PERMIT)


class DecidedMemo(BoundedMemo[DecidedKey, PolicyOutcome]):
    """The outcome each whole Cedar request folded into, for one snapshot's enforcing policies.

    tether's Cedar request holds no entities and reads nothing but its principal, action,
    resource and context (:mod:`tether.policy.engine`), and Cedar's evaluation is a pure
    function of the policies and the request: the same request against the same snapshot
    always gets the same answer, so asking again only costs Cedar's call (~26 µs warm, more
    with the CPU's caches cold). The memo lives and dies with the snapshot (a reload never sees
    an outcome decided by the policies it replaced), keeps at most :data:`DECIDED_MEMO`
    requests (oldest dropped first), each with a context of at most
    :data:`DECIDED_CONTEXT_CHARS` characters, and only errorless answers."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(DECIDED_MEMO)

    @staticmethod
    def key(action: ActionKind, tool: str, agent: str, context: str) -> DecidedKey | None:
        """The request's key, or ``None`` when its context is too long to remember."""
        if len(context) > DECIDED_CONTEXT_CHARS:
            return None
        return (action, tool, agent, context)


class PolicyIndex:
    """Buckets of one bundle's policies and the cache of compiled subsets.

    It holds the enforcing policies, or with ``observed=True`` the observe-mode ones; the
    others are left out.
    """

    def __init__(
        self,
        policies: Iterable[PolicyMeta],
        cache_size: int = DEFAULT_CACHE_SIZE,
        *,
        observed: bool = False,
    ) -> None:
        self._observed = observed
        general: dict[ActionKind, list[PolicyMeta]] = {a: [] for a in ActionKind}
        specific: dict[ActionKind, dict[str, list[PolicyMeta]]] = {a: {} for a in ActionKind}
        self.size = 0
        for meta in policies:
            if meta.observed != observed:
                continue
            self.size += 1
            for action in meta.actions:
                if meta.tool is None:
                    general[action].append(meta)
                else:
                    specific[action].setdefault(meta.tool, []).append(meta)
        self._general = {a: tuple(ps) for a, ps in general.items()}
        self._specific = {
            a: {tool: tuple(ps) for tool, ps in by_tool.items()} for a, by_tool in specific.items()
        }
        self._cache: dict[tuple[ActionKind, str | None], CompiledSubset] = {}
        self._cache_size = max(cache_size, len(ActionKind))
        self._lock = threading.Lock()

    def candidates(self, action: ActionKind, tool: str) -> tuple[PolicyMeta, ...]:
        """The policies a request for ``action`` on ``tool`` evaluates, in load order."""
        specific = self._specific[action].get(tool)
        if not specific:
            return self._general[action]
        merged = self._general[action] + specific
        return tuple(sorted(merged, key=lambda p: p.order))

    def subset(self, action: ActionKind, tool: str) -> CompiledSubset:
        """The compiled subset for (action, tool), built on first use."""
        key: tuple[ActionKind, str | None] = (
            (action, tool) if tool in self._specific[action] else (action, None)
        )
        found = self._cache.get(key)
        if found is not None:
            return found
        compiled = CompiledSubset(self.candidates(action, tool), observing=self._observed)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                return found
            while len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = compiled
        return compiled

    @property
    def cached(self) -> int:
        return len(self._cache)

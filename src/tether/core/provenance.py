"""Argument provenance: where each value an agent passes was seen, and whether that may fill
a sensitive argument.

A value an attacker wrote in a tool's result (a URL, an e-mail address, an IBAN, a date) must
not fill a sensitive argument of a later call, even one inside the grant. So the values that
enter the agent's context are recorded per task, with the source they came from, and the
catalog declares per tool argument what provenance it needs:

- the user's own request is a trusted source, and so are the tools and datasets the operator
  marks trusted (the user's own account, contacts the user created); every other tool result
  is untrusted;
- ``trusted``: every value in the argument must have been seen in a trusted source;
- ``not_only_untrusted``: no value in the argument may have been seen only in untrusted sources.

A value seen nowhere (one the agent made up, or the user typed in another form) fails
``trusted`` and passes ``not_only_untrusted``: nothing an attacker wrote put it there. But if
part of an untrusted result went unscanned (it was too large), such a value may have come from
that part, so it is counted as seen there and fails ``not_only_untrusted`` too.

Values are never kept raw: each is a keyed HMAC-SHA256 of its kind and normal form
(:func:`fingerprint`), and a :class:`Violation` names the argument, the kind and the sources,
never the value. Values are found by :mod:`tether.core.provenance_extract`.

Each task has a key of its own (:func:`task_key`): the HMAC, under the operator's master key,
of a random secret kept on the task's row until the task ends. Neither the database (without
the master key) nor the master key (without the row) can test a guessed value, and once the
task has ended and its secret is wiped, nothing can: the fingerprints it left are unlinkable
(crypto-shredding). A delegation chain's observations are checked under each task's own key
(:func:`check_chain`).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from tether.core.errors import ConfigurationError, ErrorCode, InvalidRequest
from tether.core.provenance_extract import (
    ALL_KINDS,
    DEFAULT_LIMITS,
    ExtractLimits,
    ValueKind,
    extract_json,
)
from tether.core.scope import JSONValue

__all__ = [
    "ARGUMENT_LIMITS",
    "DEFAULT_SINK_KINDS",
    "MIN_KEY_BYTES",
    "FingerprintKey",
    "Need",
    "Observation",
    "Outcome",
    "ProvenanceIndex",
    "SinkRequirement",
    "Source",
    "Trust",
    "Violation",
    "Why",
    "check_arguments",
    "check_chain",
    "fingerprint",
    "fingerprints",
    "observe",
    "observe_under",
    "same_fingerprint",
    "strictest",
    "task_key",
]

#: The shortest HMAC key accepted (RFC 2104 asks for at least the hash's output length).
MIN_KEY_BYTES = 32
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_MAX_NAME = 256
#: The limits of one argument's scan: an argument past them fails its sink whole.
ARGUMENT_LIMITS = ExtractLimits(max_chars=16_384, max_values=256)


# --- fingerprints -------------------------------------------------------------------------------


#: Domain separation of a task's key from any other use of the master key.
_TASK_KEY_LABEL = b"tether provenance task key\x00"


def task_key(master: bytes, secret: bytes) -> bytes:
    """The key of one task's fingerprints: HMAC-SHA256(master, label || the task's secret).

    An empty secret marks a task opened before tasks had secrets: its fingerprints were made
    under the master key itself, which it keeps until it ends.
    """
    _check_key(master)
    if not secret:
        return master
    return hmac.digest(master, _TASK_KEY_LABEL + secret, "sha256")


def _check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigurationError(f"a provenance key has at least {MIN_KEY_BYTES} bytes")


def _message(kind: ValueKind, normalized: str) -> bytes:
    return f"{kind.value}\x00{normalized}".encode("utf-8", "surrogatepass")


def fingerprint(key: bytes, kind: ValueKind, normalized: str) -> str:
    """The keyed HMAC-SHA256 of one normalized value, as 64 hex digits.

    The kind is part of the MAC, so ``12345678`` as an account and as a phone number differ.
    Without the key a fingerprint cannot be tested against a guessed value.
    """
    _check_key(key)
    return hmac.digest(key, _message(kind, normalized), "sha256").hex()


class FingerprintKey:
    """A key that fingerprints are made under, its HMAC-SHA256 state prepared once.

    Each fingerprint copies the prepared state instead of deriving the key's pads again: the
    same HMAC as :func:`fingerprint`, for well under half its cost. The key never shows in a
    ``repr``.
    """

    __slots__ = ("_mac",)

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._mac = hmac.new(key, digestmod="sha256")

    def of(self, message: bytes) -> str:
        """The fingerprint of one message (:func:`_message`), as 64 hex digits."""
        mac = self._mac.copy()
        mac.update(message)
        return mac.hexdigest()

    def __repr__(self) -> str:
        return "FingerprintKey(<hidden>)"


def _prepared(key: bytes | FingerprintKey) -> FingerprintKey:
    return key if type(key) is FingerprintKey else FingerprintKey(key)  # type: ignore[arg-type]


def same_fingerprint(a: str, b: str) -> bool:
    """Compare two fingerprints in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


def fingerprints(
    key: bytes | FingerprintKey,
    value: JSONValue,
    kinds: frozenset[ValueKind] = ALL_KINDS,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> tuple[frozenset[str], bool]:
    """The fingerprints of every value found in ``value`` (a text or any JSON), and whether
    it was scanned whole. Used for the user's request and for tool results alike."""
    found = extract_json(value, kinds, limits)
    prepared = _prepared(key)
    return frozenset(prepared.of(_message(v.kind, v.value)) for v in found.values), found.complete


# --- sources and observations -------------------------------------------------------------------


class Trust(StrEnum):
    TRUSTED = "trusted"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True, slots=True)
class Source:
    """Where values were seen: one tool (and dataset) and whether it is trusted."""

    tool: str
    dataset: str | None
    trust: Trust

    def __post_init__(self) -> None:
        if not isinstance(self.tool, str) or not 0 < len(self.tool) <= _MAX_NAME:
            raise InvalidRequest(
                f"an observation's tool is a name of 1 to {_MAX_NAME} characters",
                code=ErrorCode.INVALID_FIELD,
            )
        if self.dataset is not None and (
            not isinstance(self.dataset, str) or not 0 < len(self.dataset) <= _MAX_NAME
        ):
            raise InvalidRequest(
                f"an observation's dataset is absent or a name of 1 to {_MAX_NAME} characters",
                code=ErrorCode.INVALID_FIELD,
            )
        if not isinstance(self.trust, Trust):
            raise InvalidRequest(
                "an observation's trust is 'trusted' or 'untrusted'", code=ErrorCode.INVALID_FIELD
            )

    def to_json(self) -> dict[str, JSONValue]:
        return {"tool": self.tool, "dataset": self.dataset, "trust": self.trust.value}


@dataclass(frozen=True, slots=True)
class Observation:
    """The fingerprints of the values seen in one tool result, and its source.

    ``complete`` is False when part of the result was not scanned (too large): the rest is
    counted as seen in this source (see the module docstring).
    """

    source: Source
    fingerprints: frozenset[str]
    complete: bool = True

    def __post_init__(self) -> None:
        # A malformed observation is refused whole, before it can change any index.
        if not isinstance(self.source, Source):
            raise InvalidRequest(
                "an observation names its source (tool, dataset, trust)",
                code=ErrorCode.INVALID_FIELD,
            )
        if not isinstance(self.fingerprints, frozenset) or not all(
            isinstance(f, str) and _FINGERPRINT.fullmatch(f) for f in self.fingerprints
        ):
            raise InvalidRequest(
                "an observation's fingerprints are HMAC-SHA256 digests in lower-case hex",
                code=ErrorCode.INVALID_FIELD,
            )
        if not isinstance(self.complete, bool):
            raise InvalidRequest(
                "an observation's 'complete' is true or false", code=ErrorCode.INVALID_FIELD
            )


def observe(
    key: bytes | FingerprintKey,
    source: Source,
    result: JSONValue,
    kinds: frozenset[ValueKind] = ALL_KINDS,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> Observation:
    """What one tool result puts into the agent's context, as an :class:`Observation`."""
    found, complete = fingerprints(key, result, kinds, limits)
    return Observation(source, found, complete)


def observe_under(
    keys: Sequence[bytes | FingerprintKey],
    source: Source,
    result: JSONValue,
    kinds: frozenset[ValueKind] = ALL_KINDS,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> list[Observation]:
    """:func:`observe` under each of ``keys`` (a delegation chain's tasks): the result is
    scanned once, and its values fingerprinted under every key, in order."""
    found = extract_json(result, kinds, limits)
    messages = [_message(v.kind, v.value) for v in found.values]
    observations = []
    for key in keys:
        prepared = _prepared(key)
        fps = frozenset(prepared.of(m) for m in messages)
        observations.append(Observation(source, fps, found.complete))
    return observations


@dataclass(frozen=True, slots=True)
class ProvenanceIndex:
    """Every observation of one task, indexed by fingerprint: the sources it was seen in.

    Immutable: :meth:`with_observations` returns a new index (it copies the mapping, which at
    the thousands of values a task holds costs far less than one store read). A lookup is one
    dict access.
    """

    _seen: Mapping[str, frozenset[Source]] = field(default_factory=dict, hash=False)
    #: Untrusted sources part of whose result went unscanned.
    unscanned: frozenset[Source] = frozenset()
    #: The fingerprints seen in at least one trusted source (a check's first question).
    _trusted: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        trusted = frozenset(
            fp
            for fp, sources in self._seen.items()
            if any(s.trust is Trust.TRUSTED for s in sources)
        )
        object.__setattr__(self, "_trusted", trusted)

    @classmethod
    def of(cls, observations: Iterable[Observation]) -> ProvenanceIndex:
        return cls().with_observations(observations)

    def with_observations(self, observations: Iterable[Observation]) -> ProvenanceIndex:
        seen = dict(self._seen)
        unscanned = set(self.unscanned)
        for observation in observations:
            if not isinstance(observation, Observation):
                raise InvalidRequest(
                    "an observation is a source and the fingerprints seen in its result",
                    code=ErrorCode.INVALID_FIELD,
                )
            source = observation.source
            for fp in observation.fingerprints:
                known = seen.get(fp)
                if known is None:
                    seen[fp] = frozenset((source,))
                elif source not in known:
                    seen[fp] = known | {source}
            if not observation.complete and source.trust is Trust.UNTRUSTED:
                unscanned.add(source)
        return ProvenanceIndex(seen, frozenset(unscanned))

    def merged(self, other: ProvenanceIndex) -> ProvenanceIndex:
        """Both indexes as one (a delegation chain's observations roll up into its root's)."""
        seen = dict(self._seen)
        for fp, sources in other._seen.items():
            seen[fp] = seen.get(fp, frozenset()) | sources
        return ProvenanceIndex(seen, self.unscanned | other.unscanned)

    def trusted(self, fp: str) -> bool:
        """Whether ``fp`` was seen in a trusted source."""
        return fp in self._trusted

    def sources(self, fp: str) -> frozenset[Source]:
        """The sources ``fp`` was seen in (empty: never seen)."""
        # A dict lookup, not a constant-time compare: a fingerprint is not a secret (the key
        # is), and which fingerprints a task holds is no more than the index itself says.
        return self._seen.get(fp, frozenset())

    @property
    def size(self) -> int:
        """How many distinct values the task has observed. (Not ``__len__``: an index holding
        nothing must not read as false where an index is expected.)"""
        return len(self._seen)

    def __repr__(self) -> str:
        return f"ProvenanceIndex(<{len(self._seen)} values>, unscanned={len(self.unscanned)})"


# --- sinks ----------------------------------------------------------------------------------------


class Need(StrEnum):
    """What provenance a sink argument needs."""

    TRUSTED = "trusted"
    NOT_ONLY_UNTRUSTED = "not_only_untrusted"


class Outcome(StrEnum):
    """What a call gets when one of its arguments fails its need."""

    DENY = "deny"
    APPROVAL_REQUIRED = "approval_required"


#: The kinds a sink checks unless it names its own: all but ``text`` (a whole message body is
#: never seen verbatim anywhere, so ``text`` is asked for by the arguments it fits, e.g. titles).
DEFAULT_SINK_KINDS: frozenset[ValueKind] = ALL_KINDS - {ValueKind.TEXT}


@dataclass(frozen=True, slots=True)
class SinkRequirement:
    """The provenance one argument of a tool needs, and the outcome when it fails.

    ``argument`` names a top-level argument, or a nested one with dots (``event.title``). The
    whole argument is scanned, so a link inside a message body is checked as a URL. Every
    value of ``kinds`` found in it must meet ``need``: a ``url`` sink that should take any page
    of a trusted site names ``kinds={DOMAIN}``, since the default also asks the URL itself.
    """

    argument: str
    need: Need
    outcome: Outcome = Outcome.DENY
    kinds: frozenset[ValueKind] = DEFAULT_SINK_KINDS

    def __post_init__(self) -> None:
        if not self.argument or not all(self.argument.split(".")):
            raise ConfigurationError(
                f"a sink names an argument ('to', or 'event.title' for a nested one), "
                f"not {self.argument!r}"
            )
        if not self.kinds:
            raise ConfigurationError(
                f"the sink on {self.argument!r} checks no kind of value: name at least one"
            )


class Why(StrEnum):
    #: ``trusted``: the value was not seen in a trusted source (``sources``: where it was seen).
    NOT_TRUSTED = "not_trusted"
    #: ``not_only_untrusted``: the value was seen only in untrusted sources.
    ONLY_UNTRUSTED = "only_untrusted"
    #: The argument itself was too large to scan whole: what was not scanned cannot pass.
    ARGUMENT_UNSCANNED = "argument_unscanned"


@dataclass(frozen=True, slots=True)
class Violation:
    """One argument value whose provenance fails its sink. Names no value, only its kind."""

    argument: str
    kind: ValueKind | None
    need: Need
    outcome: Outcome
    why: Why
    #: The sources the value was seen in, ordered (empty: seen nowhere).
    sources: tuple[Source, ...] = ()
    #: True when the sources include results only partly scanned (the value may be there).
    unscanned: bool = False

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "argument": self.argument,
            "kind": self.kind.value if self.kind is not None else None,
            "need": self.need.value,
            "outcome": self.outcome.value,
            "why": self.why.value,
            "sources": [s.to_json() for s in self.sources],
            "unscanned": self.unscanned,
        }


def strictest(violations: Sequence[Violation]) -> Outcome | None:
    """The outcome a call gets from its violations: ``deny`` wins (``None``: no violation)."""
    if not violations:
        return None
    if any(v.outcome is Outcome.DENY for v in violations):
        return Outcome.DENY
    return Outcome.APPROVAL_REQUIRED


_MISSING = object()


def _argument(args: Mapping[str, JSONValue], path: str) -> JSONValue | object:
    if "." not in path:  # a top-level argument (most sinks)
        return args.get(path, _MISSING) if isinstance(args, dict) else _MISSING
    value: JSONValue | object = args
    for name in path.split("."):
        if not isinstance(value, dict) or name not in value:
            return _MISSING
        value = value[name]
    return value


def _ordered(sources: Iterable[Source]) -> tuple[Source, ...]:
    return tuple(sorted(sources, key=lambda s: (s.trust.value, s.tool, s.dataset or "")))


def check_arguments(
    args: Mapping[str, JSONValue],
    requirements: Sequence[SinkRequirement],
    index: ProvenanceIndex,
    key: bytes | FingerprintKey,
    user_request_fingerprints: frozenset[str],
    limits: ExtractLimits = ARGUMENT_LIMITS,
) -> list[Violation]:
    """:func:`check_chain` for one task's ``index``, its fingerprints made under ``key``;
    values whose fingerprints are in ``user_request_fingerprints`` are trusted."""
    return check_chain(args, requirements, ((key, index),), limits, user_request_fingerprints)


def check_chain(
    args: Mapping[str, JSONValue],
    requirements: Sequence[SinkRequirement],
    observed: Sequence[tuple[bytes | FingerprintKey, ProvenanceIndex]],
    limits: ExtractLimits = ARGUMENT_LIMITS,
    trusted: frozenset[str] = frozenset(),
) -> list[Violation]:
    """Every value of a sink argument whose provenance fails its requirement.

    ``observed`` is what each task of a delegation chain observed, with the key its
    fingerprints were made under: a value's sources are those of its fingerprint under each
    task's key. ``trusted`` holds fingerprints (under the first key) that pass as trusted.

    An argument the call does not carry is not checked (the catalog's constraints say which
    arguments a tool must have). An argument too large to scan whole under ``limits`` fails,
    once, whatever its values.
    """
    parts: list[tuple[FingerprintKey, ProvenanceIndex]] = []
    unscanned: frozenset[Source] = frozenset()
    for key, index in observed:
        unscanned |= index.unscanned
        prepared = _prepared(key)
        if index.size:  # an index holding nothing costs no MAC
            parts.append((prepared, index))
    request_key = _prepared(observed[0][0]) if observed and trusted else None
    violations: list[Violation] = []
    for requirement in requirements:
        value = _argument(args, requirement.argument)
        if value is _MISSING:
            continue
        found = extract_json(value, requirement.kinds, limits)  # type: ignore[arg-type]
        # URLs found trusted: the host of each was seen in that trusted source too.
        trusted_urls: list[str] = []
        for extracted in found.values:
            kind = extracted.kind
            if (
                kind is ValueKind.DOMAIN
                and trusted_urls
                and _host_of_any(extracted.value, trusted_urls)
            ):
                continue
            message = _message(kind, extracted.value)
            if request_key and request_key.of(message) in trusted:
                seen: frozenset[Source] | None = None
            else:
                seen = _seen_in(parts, message)
            if seen is None:  # seen in a trusted source
                if kind is ValueKind.URL:
                    trusted_urls.append(extracted.value)
                continue
            failure = _fails(requirement.need, seen, unscanned)
            if failure is not None:
                why, sources, partly = failure
                violations.append(
                    Violation(
                        requirement.argument,
                        kind,
                        requirement.need,
                        requirement.outcome,
                        why,
                        _ordered(sources),
                        partly,
                    )
                )
        if not found.complete:
            violations.append(
                Violation(
                    requirement.argument,
                    None,
                    requirement.need,
                    requirement.outcome,
                    Why.ARGUMENT_UNSCANNED,
                )
            )
    return violations


#: What may follow the host in a URL's normal form.
_AFTER_HOST = frozenset("/:?#")


def _host_of_any(domain: str, urls: Sequence[str]) -> bool:
    """Whether ``domain`` is the host of one of ``urls`` (normal forms, ``scheme://host…``)."""
    for url in urls:
        at = url.find("://") + 3
        end = at + len(domain)
        if url.startswith(domain, at) and (end == len(url) or url[end] in _AFTER_HOST):
            return True
    return False


def _seen_in(
    parts: Sequence[tuple[FingerprintKey, ProvenanceIndex]], message: bytes
) -> frozenset[Source] | None:
    """The sources the value of ``message`` was seen in across ``parts`` (``None``: one of
    them is trusted, so nothing more is asked)."""
    seen: frozenset[Source] = frozenset()
    for key, index in parts:
        fp = key.of(message)
        if index.trusted(fp):
            return None
        found = index.sources(fp)
        if found:
            seen = seen | found if seen else found
    return seen


def _fails(
    need: Need, seen: frozenset[Source], unscanned: frozenset[Source]
) -> tuple[Why, frozenset[Source], bool] | None:
    """Why a value seen in ``seen`` (no trusted source among them) fails ``need``, with the
    sources to name (``None``: it passes)."""
    match need:
        case Need.TRUSTED:
            return Why.NOT_TRUSTED, seen, False
        case Need.NOT_ONLY_UNTRUSTED:
            if seen:
                return Why.ONLY_UNTRUSTED, seen, False
            if unscanned:
                # Seen nowhere scanned, but an untrusted result was only partly scanned: the
                # value may have come from its rest, which counts as untrusted.
                return Why.ONLY_UNTRUSTED, unscanned, True
            return None

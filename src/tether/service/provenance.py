"""Argument provenance as a use case: what enters an agent's context, and the facts a decision
reads of it (the rules are pure, in :mod:`tether.core.provenance`).

- At task open, the values of the user's request (``intent.request``) are fingerprinted as a
  trusted source (:meth:`ProvenanceService.request_observation`). The request itself is never
  stored, nor written to the audit log: only its fingerprints, and how many values it held.
- Every enforcement point that sees a tool's result records what it put in the agent's
  context: the MCP gateway and the egress proxy call :meth:`ProvenanceService.observe` (they
  know the task they serve); agents report through ``POST /v1/observations``
  (:meth:`ProvenanceService.observe_result`, the SDK's guard and ``observe``).
- Before a call is decided, :meth:`ProvenanceService.assess` checks the tool's sink arguments
  against everything the task's delegation chain observed, the user's request and the
  operator's trusted values. It reads nothing while the chain's tasks (read by the decision
  anyway) say their observations are unchanged (:attr:`Task.observed`).

Trust. A result is untrusted unless the catalog marks its tool or dataset trusted, or, for a
tool whose catalog entry declares ``parts``, in the items of it a trusted author wrote
(:class:`~tether.core.provenance_parts.TrustedParts`): those are recorded as a trusted source,
the rest of the result as untrusted. Through the API, where the agent itself reports, a result
(or a part) counts as trusted only when it names the decision that allowed exactly that tool
and dataset on this task: an agent cannot launder a value by claiming it came from a trusted
tool it never called.

Delegation. An observation is written under the observing task and every task it was delegated
from, and a decision reads the caller's task and its ancestors: a parent sees what its delegates
saw, a delegate sees its parent's (and so its siblings') observations and the root's request,
so no task of a chain can launder an untrusted value for another.

Values are kept only as HMAC-SHA256 fingerprints, each task's under a key of its own: derived
from the master key of the data directory (``keys/provenance-hmac.key``, which never leaves this
service) and a random secret on the task's row (:func:`tether.core.provenance.task_key`). Ending
a task wipes its secret in the same write (:mod:`tether.store.tasks`): its fingerprints can no
longer be linked to any value, by anyone. An expired task is ended, and so wiped, by the
reaper (``TaskService.reap_expired``); until then no decision is allowed on it anyway. A task
whose secret is gone observes nothing, and counts as an unscanned, untrusted part of any chain
it is still read in (so it can only make a check stricter).

In memory, the derived keys kept with a chain's observations go with the task too: at once when
the task ends in this process (:meth:`ProvenanceService.forget`; the store forgets the task rows
it remembers, which carry the secret), and otherwise (ended by another replica, or its agent
revoked) at the first housekeeping sweep after ``cache_idle_seconds`` without a decision on it
(:meth:`ProvenanceService.sweep`, through :meth:`tether.runtime.Runtime.forget_idle`).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tether.core.call import Call
from tether.core.errors import (
    Conflict,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    Unauthenticated,
)
from tether.core.identity import Workload
from tether.core.ids import DecisionId, IdKind, TaskId, is_well_formed
from tether.core.provenance import (
    MIN_KEY_BYTES,
    FingerprintKey,
    Observation,
    ProvenanceIndex,
    Source,
    Trust,
    observe,
    observe_under,
    task_key,
)
from tether.core.provenance_extract import DEFAULT_LIMITS, ExtractLimits
from tether.core.provenance_rules import (
    NO_PROVENANCE,
    OPERATOR_SOURCE,
    REQUEST_SOURCE,
    ArgumentProvenance,
    ProvenanceRules,
    assess_chain,
)
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, JSONValue, is_valid_name
from tether.core.task import Task, grant_is_usable
from tether.core.verdict import Decision
from tether.service.ports import (
    Clock,
    DecisionLog,
    GrantSigner,
    ObservationStore,
    ObservedRows,
    PolicyEngine,
    QueuedObservations,
    TaskStore,
)

__all__ = ["ProvenanceService", "ProvenanceSettings", "Recorded"]

#: What a chain observed: each task's index (root last) under its key, then the operator's.
_Keyed = tuple[tuple[FingerprintKey, ProvenanceIndex], ...]
#: A chain's :data:`_Keyed`, with what it was read at: each task's ``observed`` count and
#: secret, and the rules.
_Cached = tuple[tuple[tuple[int, ...], tuple[bytes | None, ...]], ProvenanceRules, _Keyed]
#: How many random bytes a task's provenance secret has.
SECRET_BYTES = 32
#: What a chain's task whose secret is gone (it ended) counts as: an unscanned, untrusted part.
ENDED_SOURCE = Source("(ended)", None, Trust.UNTRUSTED)


@dataclass(frozen=True, slots=True)
class ProvenanceSettings:
    #: How many fingerprints one task keeps (past it: see ObservationStore.add_observation).
    max_observations_per_task: int = 10_000
    #: How much of one tool result is scanned; the rest counts as an unscanned, untrusted part.
    result_limits: ExtractLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    #: The longest user request a task may carry (characters).
    max_request_chars: int = 16_384
    #: How many delegation chains' observations are kept in memory between decisions.
    cached_chains: int = 1024
    #: How long a chain no decision has used stays in memory (its keys with it), in seconds:
    #: a task's derived key leaves memory at most this long (plus one sweep) after it ends.
    cache_idle_seconds: float = 60.0


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one observation recorded: never a value."""

    task_id: TaskId
    source: Source
    values: int
    complete: bool
    #: Items of the result a trusted author wrote, recorded as a trusted source of their own.
    trusted_parts: int = 0

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "task_id": self.task_id,
            "source": self.source.to_json(),
            "values": self.values,
            "complete": self.complete,
            "trusted_parts": self.trusted_parts,
        }


class ProvenanceService:
    def __init__(
        self,
        *,
        store: ObservationStore,
        tasks: TaskStore,
        decisions: DecisionLog,
        policy: PolicyEngine,
        signer: GrantSigner,
        clock: Clock,
        key: bytes,
        chain: Callable[[Task], Sequence[Task]],
        settings: ProvenanceSettings | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        queue: QueuedObservations | None = None,
    ) -> None:
        """``queue``: the group commit :meth:`queue_result` writes through (the same database
        as ``store``); without it :meth:`queue_result` is not offered."""
        self._queue = queue
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a provenance key has at least {MIN_KEY_BYTES} bytes")
        self._store = store
        self._tasks = tasks
        self._decisions = decisions
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._key = key
        self._master = FingerprintKey(key)
        self._chain = chain
        self._random_bytes = random_bytes
        self._settings = settings if settings is not None else ProvenanceSettings()
        self._operator: tuple[ProvenanceRules, ProvenanceIndex] | None = None
        # What each chain observed (with the operator's values), with its tasks' row counts
        # and the rules it was read under: reused while both are unchanged (rows are
        # insert-only), so a decision reads nothing more than the tasks it already read.
        self._indexes: OrderedDict[tuple[TaskId, ...], _Cached] = OrderedDict()
        # When each chain was last used, as the time of the sweep before that use: a use
        # stamps it without reading the clock (see sweep).
        self._used: dict[tuple[TaskId, ...], datetime] = {}
        self._swept_at = clock.now()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ProvenanceService(<key hidden>)"

    # -- keys ------------------------------------------------------------------------------

    def new_secret(self) -> bytes:
        """A fresh task's provenance secret (:attr:`Task.provenance_secret`)."""
        return self._random_bytes(SECRET_BYTES)

    def _key_of(self, secret: bytes | None) -> FingerprintKey | None:
        """The key of a task's fingerprints (``None``: its secret is gone, it ended)."""
        if secret is None:
            return None
        return self._master if not secret else FingerprintKey(task_key(self._key, secret))

    # -- the user's request ----------------------------------------------------------------

    def request_observation(self, request: str | None, secret: bytes) -> Observation | None:
        """The fingerprints of the user's request, a trusted source (``None``: no request),
        under the key of the task whose ``secret`` is given (the task it opens).

        Raises ``InvalidRequest`` for a request that is not a string within the bound."""
        if request is None:
            return None
        limit = self._settings.max_request_chars
        if not isinstance(request, str) or not request.strip() or len(request) > limit:
            raise InvalidRequest(
                f"intent.request is the user's request as given: a non-empty string of at most "
                f"{limit} characters",
                code=ErrorCode.INVALID_FIELD,
            )
        key = self._key_of(secret)
        assert key is not None  # a secret, perhaps empty, is given
        return observe(key, REQUEST_SOURCE, request, limits=ExtractLimits(max_chars=limit))

    def record_request(self, task_id: TaskId, observation: Observation) -> None:
        """Keep the request's fingerprints with the task it opened."""
        self._store.add_observations(
            [(task_id, observation)], self._clock.now(), self._settings.max_observations_per_task
        )

    # -- observing results -----------------------------------------------------------------

    def observe(self, task: Task, tool: str, dataset: str | None, result: JSONValue) -> Recorded:
        """Record what ``result`` of ``tool`` (read from ``dataset``) put in the context of
        ``task``'s agent, under ``task`` and every task it was delegated from. For the doors
        that serve the task themselves (MCP gateway, egress proxy): the catalog decides trust.
        """
        return self._record(task, tool, dataset, result, allowed=True)

    def observe_result(
        self,
        agent: Workload,
        grant_token: str,
        tool: str,
        dataset: str | None,
        result: JSONValue,
        decision_id: str | None = None,
    ) -> Recorded:
        """An agent's report of a tool result (``POST /v1/observations``), for the task its
        grant names. Trusted only when the catalog marks the tool or dataset trusted *and*
        ``decision_id`` names the allow of exactly this tool and dataset on this task."""
        task, allowed = self._checked(agent, grant_token, tool, dataset, decision_id)
        return self._record(task, tool, dataset, result, allowed=allowed)

    @property
    def queues(self) -> bool:
        """Whether :meth:`queue_result` is offered (a store with a group commit to join)."""
        return self._queue is not None

    def queue_result(
        self,
        agent: Workload,
        grant_token: str,
        tool: str,
        dataset: str | None,
        result: JSONValue,
        decision_id: str | None = None,
    ) -> Awaitable[object]:
        """:meth:`observe_result` for an enforcement point that answered already (the MCP
        gateway): checked and fingerprinted now, exactly as there (raising what it raises);
        its rows, every part of the result together, queued into the decisions' group commit
        and awaited on the running event loop (``Unavailable`` if the batch did not commit).
        The decisions on the chain's tasks wait for it."""
        queue = self._queue
        assert queue is not None, "queue_result() needs the store's group commit"
        rows, _recorded = self.checked_result(
            agent, grant_token, tool, dataset, result, decision_id
        )
        return queue.queue_observations(rows.entries, rows.at, rows.limit, rows.key)

    def checked_result(
        self,
        agent: Workload,
        grant_token: str,
        tool: str,
        dataset: str | None,
        result: JSONValue,
        decision_id: str | None = None,
    ) -> tuple[ObservedRows, Recorded]:
        """What :meth:`queue_result` writes, checked and fingerprinted exactly as there
        (raising what it raises), for a write made with the call's effect
        (:meth:`~tether.service.effects.EffectService.queue`, or
        :meth:`~tether.service.effects.EffectService.report` in one transaction): every part
        of the result in one write, its untrusted rest first; and what those rows record (what
        :meth:`observe_result` answers)."""
        task, allowed = self._checked(agent, grant_token, tool, dataset, decision_id)
        pieces, recorded = self._fingerprinted(task, tool, dataset, result, allowed=allowed)
        rows = ObservedRows(
            tuple(entry for piece in pieces for entry in piece),
            self._clock.now(),
            self._settings.max_observations_per_task,
            f"observed {task.task_id} {tool} {decision_id}",
        )
        return rows, recorded

    def _checked(
        self,
        agent: Workload,
        grant_token: str,
        tool: str,
        dataset: str | None,
        decision_id: str | None,
    ) -> tuple[Task, bool]:
        """The task an agent's report of a result is for, and whether its result may be
        trusted as the catalog says."""
        _check_names(tool, dataset)
        task = self._task_of(agent, grant_token)
        return task, self._allowed(decision_id, task, tool, dataset)

    def _record(
        self, task: Task, tool: str, dataset: str | None, result: JSONValue, *, allowed: bool
    ) -> Recorded:
        """Record ``result`` whole under its source, or, when the catalog trusts parts of it,
        its untrusted rest and then its trusted parts, under the key of ``task`` and of every
        task it was delegated from. ``allowed``: the result may be trusted as the catalog says
        (else all of it is untrusted)."""
        pieces, recorded = self._fingerprinted(task, tool, dataset, result, allowed=allowed)
        # INVARIANT: an untrusted rest is written before the trusted parts. Should the parts
        # then fail to be written, their values count as untrusted, never the other way.
        for entries in pieces:
            self._store.add_observations(
                entries, self._clock.now(), self._settings.max_observations_per_task
            )
        return recorded

    def _fingerprinted(
        self, task: Task, tool: str, dataset: str | None, result: JSONValue, *, allowed: bool
    ) -> tuple[list[list[tuple[TaskId, Observation]]], Recorded]:
        """What :meth:`_record` writes, one list of entries per piece of the result (the
        untrusted rest first), and what it recorded."""
        if task.provenance_secret is None:
            raise Conflict(
                "the task is no longer open; nothing is observed for it",
                code=ErrorCode.TASK_NOT_OPEN,
            )
        pieces = (
            self._policy.provenance.sources_of(tool, dataset, result)
            if allowed
            else ((Source(tool, dataset, Trust.UNTRUSTED), result),)
        )
        # Each task of the chain gets the values under its own key; one whose secret is gone
        # (ended) gets nothing, since nothing could ever match it again. The task itself comes
        # first, and its secret is there (checked above).
        keyed = [
            (TaskId(t.task_id), key)
            for t in self._chain(task)
            if (key := self._key_of(t.provenance_secret)) is not None
        ]
        found: set[str] = set()
        complete = True
        writes: list[list[tuple[TaskId, Observation]]] = []
        for source, piece in pieces:
            seen = observe_under(
                [key for _, key in keyed], source, piece, limits=self._settings.result_limits
            )
            writes.append([(task_id, o) for (task_id, _), o in zip(keyed, seen, strict=True)])
            found |= seen[0].fingerprints
            complete = complete and seen[0].complete
        trusted_parts = sum(len(part) for _s, part in pieces[1:] if isinstance(part, list))
        recorded = Recorded(TaskId(task.task_id), pieces[0][0], len(found), complete, trusted_parts)
        return writes, recorded

    def _task_of(self, agent: Workload, grant_token: str) -> Task:
        now = self._clock.now()
        try:
            claims = self._signer.verify(grant_token, now)
        except Unauthenticated:
            raise Forbidden("the grant is not valid", code=ErrorCode.GRANT_NOT_BOUND) from None
        if not hmac.compare_digest(claims.agent, agent.id):
            raise Forbidden(
                "the grant was issued to another workload", code=ErrorCode.GRANT_NOT_BOUND
            )
        grant, task = self._tasks.get_grant_with_task(claims.grant_id)
        if grant is None or task is None or not hmac.compare_digest(grant.agent, agent.id):
            raise Forbidden("the grant is not known", code=ErrorCode.GRANT_NOT_BOUND)
        if not grant_is_usable(grant, task, now):
            raise Conflict(
                "the task is no longer open; nothing is observed for it",
                code=ErrorCode.TASK_NOT_OPEN,
            )
        return task

    def _allowed(self, decision_id: str | None, task: Task, tool: str, dataset: str | None) -> bool:
        if decision_id is None:
            return False
        if not is_well_formed(decision_id, IdKind.DECISION):
            raise InvalidRequest(
                "decision_id is not a tether decision id", code=ErrorCode.INVALID_FIELD
            )
        record = self._decisions.get_decision(DecisionId(decision_id))
        return (
            record is not None
            and record.decision is Decision.ALLOW
            and record.task_id == task.task_id
            and record.tool == tool
            and record.dataset == dataset
        )

    # -- the facts of a decision -----------------------------------------------------------

    def assess(self, chain: Sequence[Task], call: Call) -> ArgumentProvenance:
        """The provenance facts of ``call`` by the first task of ``chain``: its sink arguments
        checked against what each task of the chain observed, under that task's key. Reads the
        store only for a tool with sinks. Raises ``Unavailable`` when the store cannot answer
        (the decision then denies)."""
        rules = self._policy.provenance
        sinks = rules.sinks_for(call.tool)
        if not sinks or not chain:
            return NO_PROVENANCE
        return assess_chain(call.args, sinks, self.keyed(chain, rules))

    def keyed(self, chain: Sequence[Task], rules: ProvenanceRules) -> _Keyed:
        """What each task of ``chain`` observed, with the key its fingerprints are under, and
        the operator's values: what :func:`~tether.core.provenance.check_chain` checks.

        The tasks were read by this decision, so their ``observed`` counts and secrets are
        current: while they are unchanged (and the rules are the same), what is in memory is
        reused, keys included, and nothing more is read. A chain leaves memory when a task of
        it ends in this process (:meth:`forget`), when no decision has used it for
        ``cache_idle_seconds`` (:meth:`sweep`), or when it is the least recently used of
        more than ``cached_chains``."""
        if len(chain) == 1:  # most calls: no delegation
            task = chain[0]
            chain_ids: tuple[TaskId, ...] = (TaskId(task.task_id),)
            version: tuple[tuple[int, ...], tuple[bytes | None, ...]] = (
                (task.observed,),
                (task.provenance_secret,),
            )
        else:
            chain_ids = tuple(TaskId(t.task_id) for t in chain)
            version = (tuple(t.observed for t in chain), tuple(t.provenance_secret for t in chain))
        with self._lock:
            cached = self._indexes.get(chain_ids)
            if cached is not None and cached[0] == version and cached[1] is rules:
                self._indexes.move_to_end(chain_ids)
                self._used[chain_ids] = self._swept_at
                return cached[2]
        # Read after the counts: rows added in between are read too, and only make the next
        # counts differ (a fresh read), never an index older than its counts.
        by_task = self._store.observations_by_task(list(chain_ids))
        observed: list[tuple[FingerprintKey, ProvenanceIndex]] = []
        for task in chain:
            key = self._key_of(task.provenance_secret)
            if key is None:
                # INVARIANT: a task whose secret is gone can only make the check stricter.
                observed.append((self._master, _ENDED))
            else:
                observed.append((key, ProvenanceIndex.of(by_task.get(TaskId(task.task_id), ()))))
        operator = self._operator_values(rules)
        if operator is not None:
            observed.append((self._master, operator))
        keyed = tuple(observed)
        with self._lock:
            self._indexes[chain_ids] = (version, rules, keyed)
            self._indexes.move_to_end(chain_ids)
            self._used[chain_ids] = self._swept_at
            while len(self._indexes) > self._settings.cached_chains:
                evicted, _ = self._indexes.popitem(last=False)
                self._used.pop(evicted, None)
        return keyed

    def remembered(self) -> frozenset[TaskId]:
        """The tasks whose observations and keys this service keeps in memory."""
        with self._lock:
            return frozenset(t for chain_ids in self._indexes for t in chain_ids)

    def forget(self, task_id: TaskId) -> None:
        """Drop from memory every chain ``task_id`` belongs to, its keys with it (the task
        ended in this process: its secret is gone from its row)."""
        with self._lock:
            for chain_ids in [c for c in self._indexes if task_id in c]:
                del self._indexes[chain_ids]
                self._used.pop(chain_ids, None)

    def sweep(self) -> int:
        """Drop the chains no decision has used for ``cache_idle_seconds``; returns how many.

        The housekeeping loop calls it. A task that ended in another process (a replica, the
        reaper of another server) is never decided on again, so its chain ages out here."""
        now = self._clock.now()
        idle = timedelta(seconds=self._settings.cache_idle_seconds)
        with self._lock:
            stale = [c for c, used in self._used.items() if now - used >= idle]
            for chain_ids in stale:
                del self._used[chain_ids]
                self._indexes.pop(chain_ids, None)
            self._swept_at = now
        return len(stale)

    def _operator_values(self, rules: ProvenanceRules) -> ProvenanceIndex | None:
        """The operator's trusted values, under the master key (kept in memory only)."""
        if not rules.trusted_values:
            return None
        cached = self._operator
        if cached is None or cached[0] is not rules:
            seen = observe(self._master, OPERATOR_SOURCE, list(rules.trusted_values))
            cached = (rules, ProvenanceIndex.of([seen]))
            self._operator = cached
        return cached[1]


_ENDED = ProvenanceIndex(unscanned=frozenset({ENDED_SOURCE}))


def _check_names(tool: object, dataset: object) -> None:
    if not isinstance(tool, str) or not is_valid_name(tool, MAX_TOOL_NAME):
        raise InvalidRequest("tool is not a valid tool name", code=ErrorCode.INVALID_FIELD)
    if dataset is not None and (
        not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
    ):
        raise InvalidRequest("dataset is not a valid dataset name", code=ErrorCode.INVALID_FIELD)

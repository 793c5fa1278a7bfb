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

Values are kept only as HMAC-SHA256 fingerprints under a key of the data directory
(``keys/provenance-hmac.key``); the key never leaves this service.
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    Observation,
    ProvenanceIndex,
    Source,
    Trust,
    observe,
)
from tether.core.provenance_extract import DEFAULT_LIMITS, ExtractLimits
from tether.core.provenance_rules import (
    NO_PROVENANCE,
    OPERATOR_SOURCE,
    REQUEST_SOURCE,
    ArgumentProvenance,
    ProvenanceRules,
    assess,
)
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, JSONValue, is_valid_name
from tether.core.task import Task, grant_is_usable
from tether.core.verdict import Decision
from tether.service.ports import (
    Clock,
    DecisionLog,
    GrantSigner,
    ObservationStore,
    PolicyEngine,
    TaskStore,
)

__all__ = ["ProvenanceService", "ProvenanceSettings", "Recorded"]

#: A chain's index, with what it was read at: each task's ``observed`` count, and the rules.
_Cached = tuple[tuple[int, ...], ProvenanceRules, ProvenanceIndex]


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
    ) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a provenance key has at least {MIN_KEY_BYTES} bytes")
        self._store = store
        self._tasks = tasks
        self._decisions = decisions
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._key = key
        self._chain = chain
        self._settings = settings if settings is not None else ProvenanceSettings()
        self._operator: tuple[ProvenanceRules, Observation] | None = None
        # What each chain observed (with the operator's values), with its tasks' row counts
        # and the rules it was read under: reused while both are unchanged (rows are
        # insert-only), so a decision reads nothing more than the tasks it already read.
        self._indexes: OrderedDict[tuple[TaskId, ...], _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "ProvenanceService(<key hidden>)"

    # -- the user's request ----------------------------------------------------------------

    def request_observation(self, request: str | None) -> Observation | None:
        """The fingerprints of the user's request, a trusted source (``None``: no request).

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
        return observe(self._key, REQUEST_SOURCE, request, limits=ExtractLimits(max_chars=limit))

    def record_request(self, task_id: TaskId, observation: Observation) -> None:
        """Keep the request's fingerprints with the task it opened."""
        self._store.add_observation(
            [task_id], observation, self._clock.now(), self._settings.max_observations_per_task
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
        _check_names(tool, dataset)
        task = self._task_of(agent, grant_token)
        allowed = self._allowed(decision_id, task, tool, dataset)
        return self._record(task, tool, dataset, result, allowed=allowed)

    def _record(
        self, task: Task, tool: str, dataset: str | None, result: JSONValue, *, allowed: bool
    ) -> Recorded:
        """Record ``result`` whole under its source, or, when the catalog trusts parts of it,
        its untrusted rest and then its trusted parts. ``allowed``: the result may be trusted
        as the catalog says (else all of it is untrusted)."""
        # INVARIANT: an untrusted rest is written before the trusted parts. Should the parts
        # then fail to be written, their values count as untrusted, never the other way.
        pieces = (
            self._policy.provenance.sources_of(tool, dataset, result)
            if allowed
            else ((Source(tool, dataset, Trust.UNTRUSTED), result),)
        )
        chain = [TaskId(t.task_id) for t in self._chain(task)]
        found: set[str] = set()
        complete = True
        for source, piece in pieces:
            seen = observe(self._key, source, piece, limits=self._settings.result_limits)
            self._store.add_observation(
                chain, seen, self._clock.now(), self._settings.max_observations_per_task
            )
            found |= seen.fingerprints
            complete = complete and seen.complete
        trusted_parts = sum(len(part) for _s, part in pieces[1:] if isinstance(part, list))
        return Recorded(TaskId(task.task_id), pieces[0][0], len(found), complete, trusted_parts)

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
        checked against what the chain observed. Reads the store only for a tool with sinks.
        Raises ``Unavailable`` when the store cannot answer (the decision then denies)."""
        rules = self._policy.provenance
        sinks = rules.sinks_for(call.tool)
        if not sinks or not chain:
            return NO_PROVENANCE
        return assess(call.args, sinks, self._observed(chain, rules), self._key)

    def _observed(self, chain: Sequence[Task], rules: ProvenanceRules) -> ProvenanceIndex:
        """What ``chain`` observed, with the operator's trusted values. The tasks were read by
        this decision, so their ``observed`` counts are current: while they are unchanged (and
        the rules are the same), the index in memory is reused and nothing more is read."""
        key = tuple(TaskId(t.task_id) for t in chain)
        counts = tuple(t.observed for t in chain)
        with self._lock:
            cached = self._indexes.get(key)
            if cached is not None and cached[0] == counts and cached[1] is rules:
                self._indexes.move_to_end(key)
                return cached[2]
        # Read after the counts: rows added in between are read too, and only make the next
        # counts differ (a fresh read), never an index older than its counts.
        index = ProvenanceIndex.of(self._store.observations(list(key)))
        operator = self._operator_values(rules)
        if operator:
            index = index.with_observations(operator)
        with self._lock:
            self._indexes[key] = (counts, rules, index)
            self._indexes.move_to_end(key)
            while len(self._indexes) > self._settings.cached_chains:
                self._indexes.popitem(last=False)
        return index

    def _operator_values(self, rules: ProvenanceRules) -> list[Observation]:
        if not rules.trusted_values:
            return []
        cached = self._operator
        if cached is None or cached[0] is not rules:
            cached = (rules, observe(self._key, OPERATOR_SOURCE, list(rules.trusted_values)))
            self._operator = cached
        return [cached[1]]


def _check_names(tool: object, dataset: object) -> None:
    if not isinstance(tool, str) or not is_valid_name(tool, MAX_TOOL_NAME):
        raise InvalidRequest("tool is not a valid tool name", code=ErrorCode.INVALID_FIELD)
    if dataset is not None and (
        not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
    ):
        raise InvalidRequest("dataset is not a valid dataset name", code=ErrorCode.INVALID_FIELD)

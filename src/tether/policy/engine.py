"""The Cedar policy engine: tether's :class:`~tether.service.ports.PolicyEngine` over cedarpy.

One request becomes one Cedar request (no entities; everything is in the context)::

    principal  Agent::"<workload id>"
    action     Action::"<read|write|delete|send|execute|spend>"
    resource   Tool::"<tool name>"
    context    see :mod:`tether.policy.context`

and is evaluated against only the policies that can apply (:mod:`tether.policy.index`), without
the schema: policies were validated against it at load, and request validation would refuse
arguments the schema does not declare. Cedar's answer is folded into allow, deny or
approval_required by :mod:`tether.policy.fold`. Cedar is asked through
:mod:`tether.policy.answer`, which returns its answer as text; an answer seen before for the
same subset, action and tool is not parsed and folded again (the subset remembers the outcome),
and a whole request asked before is not put to Cedar again (the snapshot remembers its outcome,
:class:`~tether.policy.index.DecidedMemo`; not for a call an observe-mode policy applies to).
Nothing here raises on a well-formed request: every failure denies with its cause.

Observe-mode policies (``@mode("observe")``, ``*.observe.cedar``) are indexed apart and evaluated
after the enforcing ones, with their own context: what they would have changed is returned as
``PolicyOutcome.observed`` and never touches the decision. A failure while observing is logged
and observes nothing; it cannot deny.

The engine holds one immutable :class:`PolicySnapshot` (bundle, index, the directory's
fingerprint). ``reload()`` builds a new one off to the side and swaps one reference, so each
decision sees exactly one revision; when the new files do not load, the last good snapshot stays
and ``last_error`` says why.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import cedarpy
import structlog

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.identity import Workload
from tether.core.provenance_rules import ProvenanceRules
from tether.core.scope import ActionKind, Classification
from tether.core.task import Intent
from tether.core.verdict import Decision, ReasonCode
from tether.policy.answer import Cedar, answer_key, parse
from tether.policy.bundle import PolicyBundle, load_policy_dir, load_sources
from tether.policy.context import (
    CallFacts,
    CedarJSON,
    ContextRefs,
    Unrepresentable,
    build_context,
    context_json,
    delegation_record,
)
from tether.policy.fold import (
    approval_only,
    errored_policies,
    fold,
    no_policy_permits,
    observe,
    policy_error,
)
from tether.policy.index import DEFAULT_CACHE_SIZE, CompiledSubset, DecidedMemo, PolicyIndex
from tether.policy.meta import Effect, PolicyMeta
from tether.policy.reload import Fingerprint, ReloadResult, fingerprint
from tether.policy.syntax import entity_uid
from tether.service.ports import (
    GrantPreview,
    ObservedVerdict,
    PolicyEngine,
    PolicyOutcome,
    PolicyRequest,
)

_log = structlog.get_logger("tether.policy")

_ACTION_UIDS: Final = {a: {"type": "Action", "id": a.value} for a in ActionKind}
_ACTION_ENTITIES: Final = json.dumps(
    [{"uid": uid, "attrs": {}, "parents": []} for uid in _ACTION_UIDS.values()]
)
_UNKNOWN_ARGS: Final = {"__extn": {"fn": "unknown", "arg": "args"}}
_UNKNOWN_TASK: Final = {"__extn": {"fn": "unknown", "arg": "task_id"}}
# The task's data-flow label grows during the task: at open, whatever it may become is unknown.
_UNKNOWN_DATAFLOW: Final = {"__extn": {"fn": "unknown", "arg": "dataflow"}}
_UNKNOWN_PROVENANCE: Final = {"__extn": {"fn": "unknown", "arg": "provenance"}}


@dataclass(frozen=True, slots=True)
class PolicySnapshot:
    """Everything one decision reads, swapped as a whole on reload."""

    bundle: PolicyBundle
    index: PolicyIndex
    fingerprint: Fingerprint
    entities: Any  # an empty cedarpy.Entities handle, parsed once
    action_entities: Any  # the six action entities, for partial evaluation
    observe_index: PolicyIndex  # the observe-mode policies, evaluated after the decision
    decided: DecidedMemo  # the outcome of each request asked before (see DecidedMemo)

    @property
    def revision(self) -> str:
        return self.bundle.revision

    @staticmethod
    def of(bundle: PolicyBundle, fp: Fingerprint, cache_size: int) -> PolicySnapshot:
        return PolicySnapshot(
            bundle,
            PolicyIndex(bundle.policies, cache_size),
            fp,
            cedarpy.Entities.from_json_str("[]"),
            cedarpy.Entities.from_json_str(_ACTION_ENTITIES),
            PolicyIndex(bundle.policies, cache_size, observed=True),
            DecidedMemo(),
        )


class CedarPolicyEngine:
    """Cedar behind tether's policy port, with atomic hot reload.

    Build it with :meth:`load` (a policy directory, reloadable) or :meth:`from_sources` (files
    held in memory, e.g. inline test cases; not reloadable).
    """

    def __init__(
        self,
        bundle: PolicyBundle,
        *,
        policy_dir: Path | None = None,
        fp: Fingerprint = frozenset(),
        cache_size: int = DEFAULT_CACHE_SIZE,
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> None:
        self._dir = policy_dir
        self._cache_size = cache_size
        self._on_reload = on_reload
        self._snapshot = PolicySnapshot.of(bundle, fp, cache_size)
        self._seen = fp
        self._last_error: ConfigurationError | None = None
        self._reload_lock = threading.Lock()
        self._cedar = Cedar()
        _log.info(
            "policy.loaded",
            origin=bundle.origin,
            revision=bundle.revision,
            policies=len(bundle.policies),
        )

    @classmethod
    def load(
        cls,
        policy_dir: Path,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        on_reload: Callable[[ReloadResult], None] | None = None,
    ) -> CedarPolicyEngine:
        """Load ``policy_dir``; raises ``ConfigurationError(POLICY_INVALID)`` if it is invalid."""
        fp = fingerprint(policy_dir)
        bundle = load_policy_dir(policy_dir)
        return cls(bundle, policy_dir=policy_dir, fp=fp, cache_size=cache_size, on_reload=on_reload)

    @classmethod
    def from_sources(
        cls, sources: Mapping[str, str], *, origin: str = "<memory>"
    ) -> CedarPolicyEngine:
        """Build from ``{file name: text}``; raises ``ConfigurationError(POLICY_INVALID)``."""
        return cls(load_sources(sources, origin=origin))

    # -- the port ------------------------------------------------------------------------------

    @property
    def revision(self) -> str:
        return self._snapshot.revision

    @property
    def snapshot(self) -> PolicySnapshot:
        return self._snapshot

    @property
    def last_error(self) -> ConfigurationError | None:
        """Why the most recent reload failed, or ``None`` if it succeeded."""
        return self._last_error

    def classification(self, dataset: str) -> Classification | None:
        return self._snapshot.bundle.catalog.classification(dataset)

    @property
    def provenance(self) -> ProvenanceRules:
        return self._snapshot.bundle.catalog.provenance

    def decide(self, request: PolicyRequest) -> PolicyOutcome:
        snapshot = self._snapshot  # INVARIANT: one decision reads one snapshot
        call = request.call
        try:
            subset = snapshot.index.subset(call.action, call.tool)
            raw: str | None = None
            if subset.evaluation is None:
                outcome = no_policy_permits(call.action, call.tool)
            else:
                try:
                    context = _context(request, subset.refs)
                except Unrepresentable as exc:
                    return policy_error(f"{exc}; the call is denied")
                cedar_request = _cedar_request(request, context)
                # The observe-mode policies compare their answer with the enforcing answer's
                # text: a call they apply to asks Cedar every time.
                memo = (
                    DecidedMemo.key(
                        call.action, call.tool, request.agent.id, cedar_request.get("context", "")
                    )
                    if _observes_nothing(snapshot, call.action, call.tool)
                    else None
                )
                found = snapshot.decided.get(memo) if memo is not None else None
                if found is not None:
                    return found
                raw = self._cedar.ask(cedar_request, subset.evaluation, snapshot.entities)
                outcome, errorless = _fold_answer(raw, subset, call.action, call.tool)
                if memo is not None and errorless:
                    snapshot.decided.remember(memo, outcome)
        except Exception:  # fail closed: no error path may allow
            _log.exception("policy.decide_failed", tool=call.tool, action=call.action.value)
            return policy_error("policy evaluation failed, so the call is denied")
        if snapshot.observe_index.size == 0:
            return outcome
        observed = self._observe(snapshot, request, outcome, (raw, subset))
        return replace(outcome, observed=observed) if observed else outcome

    def _observe(
        self,
        snapshot: PolicySnapshot,
        request: PolicyRequest,
        outcome: PolicyOutcome,
        enforced: tuple[str | None, CompiledSubset],
    ) -> tuple[ObservedVerdict, ...]:
        """What the observe-mode policies for this call would have changed; never raises.

        ``enforced`` is Cedar's answer text for the enforcing policies (``None`` when none
        applied) and their subset.
        """
        if outcome.decision is Decision.DENY and any(
            r.code is not ReasonCode.NO_POLICY_PERMITS for r in outcome.reasons
        ):
            return ()  # denied by a forbid or an error: no added policy could change that
        call = request.call
        try:
            subset = snapshot.observe_index.subset(call.action, call.tool)
            if subset.evaluation is None:
                return ()
            try:
                context = _context(request, subset.refs)
            except Unrepresentable as exc:
                # Enforced, a policy reading this argument would deny with policy_error.
                readers = [p for p in subset.policies if _reads_argument(p, exc.path)]
                return observe((), readers, outcome)
            answer = parse(
                self._cedar.ask(
                    _cedar_request(request, context), subset.evaluation, snapshot.entities
                )
            )
            errored = errored_policies(subset, answer.errors) if answer.errors else []
            satisfied = [subset.by_id[i] for i in answer.reasons if i in subset.by_id]
            enforced_text, enforced_subset = enforced
            pending = approval_only(
                parse(enforced_text) if enforced_text is not None else None, enforced_subset
            )
            return observe(satisfied, errored, outcome, pending_approval=pending)
        except Exception:  # observing must never change the decision, not even by failing
            _log.exception("policy.observe_failed", tool=call.tool, action=call.action.value)
            return ()

    def preview_grant(
        self,
        agent: Workload,
        intent: Intent,
        tool: str,
        action: ActionKind,
        dataset: str | None,
        delegators: tuple[str, ...] = (),
    ) -> GrantPreview:
        """Could policy ever permit ``action`` on ``tool`` for this agent, intent and dataset?

        Partial evaluation with what is known at task open (agent, intent, dataset and its
        classification) and the call's arguments and task id unknown. Approval forbids are left
        out: they ask for a human per call, they do not stop a grant. Errors are not permitted.
        """
        snapshot = self._snapshot
        try:
            subset = snapshot.index.subset(action, tool)
            if subset.permit_count == 0:
                return GrantPreview(False, (), f"no policy permits {action.value} on {tool}")
            classification = snapshot.bundle.catalog.classification(dataset) if dataset else None
            context = {
                "intent": intent.to_json(),
                "task_id": _UNKNOWN_TASK,
                "agent": {"id": agent.id, "trust_domain": agent.trust_domain, "name": agent.name},
                "dataset": dataset or "",
                "classification": classification.value if classification is not None else "",
                "args": _UNKNOWN_ARGS,
                "delegation": delegation_record(agent.id, delegators),
                "dataflow": _UNKNOWN_DATAFLOW,
                "provenance": _UNKNOWN_PROVENANCE,
            }
            request = {
                "principal": entity_uid("Agent", agent.id),
                "action": entity_uid("Action", action.value),
                "resource": entity_uid("Tool", tool),
                "context": context,
            }
            # Partial evaluation treats an entity missing from the store as unknown, even for
            # `in`; full evaluation treats it as having no parents. Name the request's entities
            # so both agree.
            entities = snapshot.action_entities.with_added_json_str(
                json.dumps(
                    [
                        {"uid": {"type": "Agent", "id": agent.id}, "attrs": {}, "parents": []},
                        {"uid": {"type": "Tool", "id": tool}, "attrs": {}, "parents": []},
                    ]
                )
            )
            result = cedarpy.is_authorized_partial(request, subset.preview, entities)
            return _fold_preview(result, subset, action, tool)
        except Exception:
            _log.exception("policy.preview_failed", tool=tool, action=action.value)
            return GrantPreview(False, (), "policy could not be evaluated, so nothing is granted")

    # -- reload --------------------------------------------------------------------------------

    def reload(self) -> ReloadResult:
        """Load the directory again and swap it in; keep the last good set if it does not load."""
        if self._dir is None:
            current = self._snapshot
            error = ConfigurationError(
                "this policy engine was built from memory; there is no directory to reload",
                code=ErrorCode.POLICY_INVALID,
            )
            return ReloadResult(False, False, current.revision, len(current.bundle.policies), error)
        with self._reload_lock:
            current = self._snapshot
            fp = fingerprint(self._dir)
            self._seen = fp
            try:
                bundle = load_policy_dir(self._dir)
            except ConfigurationError as exc:
                self._last_error = exc
                result = ReloadResult(
                    False, False, current.revision, len(current.bundle.policies), exc
                )
                _log.warning(
                    "policy.reload_failed",
                    origin=str(self._dir),
                    revision_in_force=current.revision,
                    error=exc.message,
                )
            else:
                changed = bundle.revision != current.revision
                if changed:
                    self._snapshot = PolicySnapshot.of(bundle, fp, self._cache_size)
                self._last_error = None
                result = ReloadResult(True, changed, bundle.revision, len(bundle.policies))
                _log.info(
                    "policy.reloaded",
                    origin=str(self._dir),
                    revision=bundle.revision,
                    previous_revision=current.revision,
                    changed=changed,
                    policies=len(bundle.policies),
                )
        if self._on_reload is not None:
            try:
                self._on_reload(result)
            except Exception:
                _log.exception("policy.on_reload_failed")
        return result

    def check_for_changes(self) -> ReloadResult | None:
        """Reload when the directory's files changed since the last look; else ``None``."""
        if self._dir is None or fingerprint(self._dir) == self._seen:
            return None
        return self.reload()


def _facts(request: PolicyRequest) -> CallFacts:
    agent, intent, call = request.agent, request.intent, request.call
    return CallFacts(
        intent.workflow,
        intent.purpose,
        intent.on_behalf_of,
        request.task_id,
        agent.id,
        agent.trust_domain,
        agent.name,
        call.dataset or "",
        request.classification.value if request.classification is not None else "",
        request.delegators,
        request.dataflow.value if request.dataflow is not None else "",
        request.provenance.checked,
        request.provenance.arguments,
        tuple(dict.fromkeys(s.tool for s in request.provenance.sources)),
        outcome.value if (outcome := request.provenance.outcome) is not None else "",
    )


def _fold_answer(
    raw: str, subset: CompiledSubset, action: ActionKind, tool: str
) -> tuple[PolicyOutcome, bool]:
    """Cedar's answer text folded, or the outcome the same answer folded into before; and
    whether the answer was errorless (only those are remembered)."""
    key = answer_key(raw)
    memo = (action, tool, key) if key is not None else None
    if memo is not None:
        found = subset.folded(memo)
        if found is not None:
            return found, True
    answer = parse(raw)
    outcome = fold(answer, subset, action, tool)
    if memo is not None and not answer.errors:
        subset.remember(memo, outcome)
    return outcome, not answer.errors


def _observes_nothing(snapshot: PolicySnapshot, action: ActionKind, tool: str) -> bool:
    """No observe-mode policy applies to ``action`` on ``tool``."""
    index = snapshot.observe_index
    return index.size == 0 or index.subset(action, tool).evaluation is None


def _context(request: PolicyRequest, refs: ContextRefs) -> dict[str, CedarJSON]:
    """The context record holding what ``refs`` reads: empty, with no fact gathered, when the
    policies read no context (most heads-only policies). Raises :class:`Unrepresentable`."""
    if refs.top is not None and not refs.top:
        return {}
    return build_context(_facts(request), request.call.args, refs)


def _cedar_request(request: PolicyRequest, context: Mapping[str, Any]) -> dict[str, Any]:
    """The Cedar request; an empty context is left out (Cedar's default, parsed for free)."""
    call = request.call
    cedar: dict[str, Any] = {
        "principal": {"type": "Agent", "id": request.agent.id},
        "action": _ACTION_UIDS[call.action],
        "resource": {"type": "Tool", "id": call.tool},
    }
    if context:
        cedar["context"] = context_json(context)
    return cedar


def _reads_argument(policy: PolicyMeta, path: str) -> bool:
    """Could ``policy`` read the argument at ``path`` (``amount``, ``items[2]``, ``a.b``)?"""
    top, args = policy.refs.top, policy.refs.args
    if top is not None and "args" not in top:
        return False
    if args is None:
        return True
    return any(path == n or path.startswith((f"{n}.", f"{n}[")) for n in args)


def _fold_preview(
    result: Any, subset: CompiledSubset, action: ActionKind, tool: str
) -> GrantPreview:
    diagnostics = result.diagnostics
    if diagnostics.errors:
        return GrantPreview(
            False,
            (),
            "policy could not be evaluated, so nothing is granted: "
            + "; ".join(diagnostics.errors),
        )

    def of_effect(ids: list[str], effect: Effect) -> tuple[str, ...]:
        found = [subset.by_id[i] for i in dict.fromkeys(ids) if i in subset.by_id]
        found.sort(key=lambda p: p.order)
        return tuple(p.policy_id for p in found if p.effect is effect)

    decision = result.decision.value
    if decision == "Allow":
        ids = of_effect(diagnostics.reasons, Effect.PERMIT)
        return GrantPreview(True, ids, f"policy permits {action.value} on {tool}")
    if decision == "Deny":
        forbids = of_effect(diagnostics.reasons, Effect.FORBID)
        if forbids:
            return GrantPreview(
                False, forbids, f"policy {', '.join(forbids)} forbids {action.value} on {tool}"
            )
        return GrantPreview(False, (), f"no policy permits {action.value} on {tool}")
    candidates = of_effect(
        [*diagnostics.reasons, *diagnostics.may_be_determining, *diagnostics.nontrivial_residuals],
        Effect.PERMIT,
    )
    if candidates:
        return GrantPreview(
            True,
            candidates,
            f"policy may permit {action.value} on {tool}, depending on each call",
        )
    return GrantPreview(False, (), f"no policy permits {action.value} on {tool}")


if TYPE_CHECKING:  # mypy holds the engine to the service's port
    _PORT: type[PolicyEngine] = CedarPolicyEngine

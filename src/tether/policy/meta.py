"""What tether knows about each policy, read once at load from its Cedar JSON (EST) form.

Annotations tether understands (any other annotation is kept and ignored):

    @id("name")                 the policy id; otherwise ``<file stem>.<n>`` (n counts from 0)
    @risk("ASI05,ASI01")        OWASP Agentic risk ids the policy guards against
    @reason("text")             why a forbid forbids; shown to the agent on deny
    @approval_required("why")   forbid only: a human may approve the call instead of a hard deny
    @approvers("2")             with @approval_required: distinct approvers needed (default 1)
    @row_cap("100")             permit only: the enforcement point caps rows returned
    @redact("ssn,salary")       permit only: the enforcement point redacts these fields
    @mode("observe")            evaluate and audit what the policy would change, never enforce
                                it (``@mode("enforce")``, the default, enforces). Every policy
                                of a file named ``*.observe.cedar`` is in observe mode, and its
                                default ids come from the name without ``.observe``, so renaming
                                the file to ``*.cedar`` enforces the same policy ids.

The head of each policy is read for the index: the action kinds it can apply to and, when its
resource is ``== Tool::"x"``, the one tool. Actions must be among tether's six kinds: the schema's
action hierarchy is not given to Cedar at request time, so an ``action in Action::"group"`` would
never match, and is refused at load rather than silently never applying.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tether.core.risks import Risk
from tether.core.scope import ActionKind, is_valid_name
from tether.policy.context import ContextRefs, scan_context_refs
from tether.policy.diagnostics import did_you_mean

ALL_ACTIONS: Final = frozenset(ActionKind)
POLICY_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")
MAX_ROW_CAP: Final = 1_000_000_000
MAX_ANNOTATION_TEXT: Final = 500


class Effect(StrEnum):
    PERMIT = "permit"
    FORBID = "forbid"


class Mode(StrEnum):
    """Whether a policy decides calls (``enforce``) or is only watched (``observe``)."""

    ENFORCE = "enforce"
    OBSERVE = "observe"


class PolicyProblem(ValueError):
    """A policy tether refuses to load; the loader adds the file and place to the message.

    ``near`` is the source text the problem is about (``@risk``, ``Action::"fly"``), so the
    loader can point at its line and column; ``action`` is set for an action tether does not
    know (Cedar may report the same one: the loader keeps one of the two).
    """

    def __init__(self, message: str, *, near: str | None = None, action: str | None = None):
        super().__init__(message)
        self.near = near
        self.action = action


@dataclass(frozen=True, slots=True)
class PolicyMeta:
    """One loaded policy: its id, where it came from, what it means to tether, and its EST."""

    policy_id: str
    order: int
    file: str
    line: int | None
    effect: Effect
    annotations: tuple[tuple[str, str], ...]
    risks: frozenset[Risk]
    reason: str | None
    approval_required: str | None
    approvers: int
    row_cap: int | None
    redact: tuple[str, ...]
    actions: frozenset[ActionKind]
    tool: str | None
    refs: ContextRefs
    est_json: str
    mode: Mode = Mode.ENFORCE

    @property
    def is_approval_forbid(self) -> bool:
        return self.approval_required is not None

    @property
    def observed(self) -> bool:
        return self.mode is Mode.OBSERVE

    @property
    def where(self) -> str:
        """``file:line`` (the line the policy starts on, its first annotation)."""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def est_for_evaluation(self) -> str:
        """The EST the engine evaluates: an approval forbid is evaluated *as a permit*.

        With approval forbids turned into permits, one evaluation tells apart every outcome the
        engine folds: Cedar denies only on a hard forbid (or no permit), and on allow reports the
        satisfied permits, among them the approval forbids that would have fired. So "every
        determining forbid needs approval and the call is otherwise permitted" is exactly "allow
        whose reasons hold both an approval forbid and a real permit".
        """
        if not self.is_approval_forbid:
            return self.est_json
        return self._as_permit()

    def est_for_observation(self) -> str:
        """The EST an observe-mode policy is evaluated with: *every* effect as a permit.

        Then Cedar's answer lists every satisfied observe policy (an Allow's reasons), whatever
        its effect, and errors name the ones that could not be evaluated; what each would have
        changed is worked out from its real effect (:func:`tether.policy.fold.observe`).
        """
        if self.effect is Effect.PERMIT:
            return self.est_json
        return self._as_permit()

    def _as_permit(self) -> str:
        est = json.loads(self.est_json)
        est["effect"] = Effect.PERMIT.value
        return json.dumps(est, separators=(",", ":"))


def _annotation_text(annotations: Mapping[str, str], key: str) -> str | None:
    value = annotations.get(key)
    if value is None:
        return None
    value = value.strip()
    if not value:
        raise PolicyProblem(f'@{key}("...") must not be empty', near=f"@{key}")
    if len(value) > MAX_ANNOTATION_TEXT:
        raise PolicyProblem(
            f"@{key} is longer than {MAX_ANNOTATION_TEXT} characters", near=f"@{key}"
        )
    return value


def parse_risks(value: str | None) -> frozenset[Risk]:
    if value is None:
        return frozenset()
    risks: set[Risk] = set()
    for part in value.split(","):
        name = part.strip().upper()
        try:
            risks.add(Risk(name))
        except ValueError:
            known = ", ".join(r.value for r in Risk)
            raise PolicyProblem(
                f"@risk names {part.strip()!r}, which is not an OWASP Agentic risk id "
                f"(one of {known})",
                near="@risk",
            ) from None
    return frozenset(risks)


def _row_cap(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not 0 < int(text) <= MAX_ROW_CAP:
        raise PolicyProblem(
            f'@row_cap("{value}") must be a whole number from 1 to {MAX_ROW_CAP}', near="@row_cap"
        )
    return int(text)


def _redact(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    fields = tuple(f.strip() for f in value.split(","))
    for name in fields:
        if not is_valid_name(name, 64):
            raise PolicyProblem(
                f'@redact("{value}") must list field names separated by commas; '
                f"{name!r} is not one",
                near="@redact",
            )
    return fields


def _entity(node: object) -> tuple[str, str]:
    if isinstance(node, dict):
        kind, eid = node.get("type"), node.get("id")
        if isinstance(kind, str) and isinstance(eid, str):
            return kind, eid
    raise PolicyProblem("the policy head names an entity tether cannot read")


def _action_kind(node: object) -> ActionKind:
    kind, eid = _entity(node)
    try:
        return ActionKind(eid)
    except ValueError:
        known = ", ".join(a.value for a in ActionKind)
        named = f"{kind}::{json.dumps(eid)}"
        close = did_you_mean(eid, (a.value for a in ActionKind))
        hint = (
            f'; did you mean {kind}::"{close}"?'
            if close
            else f": tether asks only about the actions {known} (action groups are not "
            "supported: list the actions instead)"
        )
        raise PolicyProblem(
            f"unknown action {named}{hint}",
            near=named,
            action=eid,
        ) from None


def head_actions(action: Mapping[str, object]) -> frozenset[ActionKind]:
    """The action kinds a policy's action constraint can match."""
    op = action.get("op")
    if op == "All":
        return ALL_ACTIONS
    if op == "==":
        return frozenset({_action_kind(action.get("entity"))})
    if op == "in":
        if "entities" in action:
            nodes = action["entities"]
            if not isinstance(nodes, list):
                raise PolicyProblem("the action list cannot be read")
            return frozenset(_action_kind(n) for n in nodes)
        return frozenset({_action_kind(action.get("entity"))})
    raise PolicyProblem(f"the action constraint {op!r} is not supported")


def head_tool(resource: Mapping[str, object]) -> str | None:
    """The one tool a ``resource == Tool::"x"`` head names, else ``None`` (applies widely)."""
    if resource.get("op") == "==":
        kind, eid = _entity(resource.get("entity"))
        if kind == "Tool":
            return eid
    return None


def _approvers(raw: str | None, is_approval: bool) -> int:
    """``@approvers("2")``: how many distinct humans must approve (N of M); default 1."""
    if raw is None:
        return 1
    if not is_approval:
        raise PolicyProblem("@approvers belongs on an @approval_required forbid", near="@approvers")
    if not raw.isdigit() or not 1 <= int(raw) <= 10:
        raise PolicyProblem("@approvers must be a whole number from 1 to 10", near="@approvers")
    return int(raw)


def _mode(raw: str | None, observe_file: bool) -> Mode:
    if raw is None:
        return Mode.OBSERVE if observe_file else Mode.ENFORCE
    try:
        mode = Mode(raw.strip())
    except ValueError:
        raise PolicyProblem(
            f'@mode("{raw}") must be "observe" or "enforce" (the default)', near="@mode"
        ) from None
    if observe_file and mode is Mode.ENFORCE:
        raise PolicyProblem(
            '@mode("enforce") in an observe file (*.observe.cedar): every policy there is '
            "observed; move the policy to a .cedar file to enforce it",
            near="@mode",
        )
    return mode


def build_meta(
    est: Mapping[str, object],
    *,
    file: str,
    stem: str,
    index: int,
    order: int,
    line: int | None,
    observe_file: bool = False,
) -> PolicyMeta:
    """Read one policy's EST; raises :class:`PolicyProblem` for what tether refuses.

    ``observe_file``: the policy comes from a ``*.observe.cedar`` file (observe mode).
    """
    raw_annotations = est.get("annotations") or {}
    if not isinstance(raw_annotations, dict):
        raise PolicyProblem("annotations cannot be read")
    annotations = {str(k): "" if v is None else str(v) for k, v in raw_annotations.items()}
    policy_id = annotations.get("id", f"{stem}.{index}")
    if not POLICY_ID_RE.match(policy_id):
        source = "@id" if "id" in annotations else "the file name"
        raise PolicyProblem(
            f"policy id {policy_id!r} (from {source}) must start with a letter or digit and use "
            "only letters, digits and ._:/@- (at most 128 characters)",
            near="@id" if "id" in annotations else None,
        )
    effect = Effect(str(est.get("effect")))
    approval = _annotation_text(annotations, "approval_required")
    row_cap = _row_cap(annotations.get("row_cap"))
    redact = _redact(annotations.get("redact"))
    if effect is Effect.PERMIT and approval is not None:
        raise PolicyProblem(
            "@approval_required belongs on a forbid policy, not a permit",
            near="@approval_required",
        )
    approvers = _approvers(annotations.get("approvers"), approval is not None)
    if effect is Effect.FORBID and (row_cap is not None or redact):
        raise PolicyProblem(
            "@row_cap and @redact belong on permit policies, not a forbid",
            near="@row_cap" if row_cap is not None else "@redact",
        )
    action, resource = est.get("action"), est.get("resource")
    if not isinstance(action, dict) or not isinstance(resource, dict):
        raise PolicyProblem("the policy head cannot be read")
    return PolicyMeta(
        policy_id=policy_id,
        order=order,
        file=file,
        line=line,
        effect=effect,
        annotations=tuple(sorted(annotations.items())),
        risks=parse_risks(annotations.get("risk")),
        reason=_annotation_text(annotations, "reason"),
        approval_required=approval,
        approvers=approvers,
        row_cap=row_cap,
        redact=redact,
        actions=head_actions(action),
        tool=head_tool(resource),
        refs=scan_context_refs(est.get("conditions")),
        est_json=json.dumps(est, separators=(",", ":")),
        mode=_mode(annotations.get("mode"), observe_file),
    )

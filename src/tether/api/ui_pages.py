"""The approver's web pages: plain server-rendered HTML, no JavaScript.

The markup lives in Jinja2 templates (``tether/templates/ui``) rendered with autoescaping
(:mod:`tether.templates`); this module only turns approvals into the plain values those templates
print. Nothing from the agent (arguments, intent) or the request is ever marked as markup, so it
can only show as text.

Argument values are shown as JSON with non-ASCII escaped (``\\u202e``), so an approver sees the
exact characters sent, including invisible or right-to-left ones a fluent agent could use to
make a call look like another (OWASP ASI09).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tether.core.approval import Approval, ApprovalState
from tether.core.breakglass import BreakGlass, BreakGlassState
from tether.service.approvals import Approver
from tether.templates import render

FACTS_NOTE: Final = "Facts written by tether; arguments are the agent's input, shown as sent."


@dataclass(frozen=True, slots=True)
class Moment:
    """An absolute UTC time, and how far it is from now."""

    iso: str
    shown: str
    relative: str


def moment(at: datetime, now: datetime) -> Moment:
    seconds = int((at - now).total_seconds())
    span = abs(seconds)
    if span < 60:
        amount = f"{span} s"
    elif span < 3600:
        amount = f"{span // 60} min"
    elif span < 86400:
        amount = f"{span // 3600} h {span % 3600 // 60} min"
    else:
        amount = f"{span // 86400} d"
    relative = f"in {amount}" if seconds > 0 else f"{amount} ago"
    return Moment(at.isoformat(), at.strftime("%Y-%m-%d %H:%M:%S UTC"), relative)


def login_page(csrf: str, error: str | None = None) -> str:
    return render("ui/login.html", title="Sign in", who=None, csrf=csrf, error=error)


def message_page(title: str, message: str, *, code: str | None = None, link: str = "") -> str:
    """A page that only says what went wrong (and where to go next)."""
    return render(
        "ui/message.html", title=title, who=None, csrf="", message=message, code=code, link=link
    )


@dataclass(frozen=True, slots=True)
class Emergency:
    """One line of the break-glass banner."""

    id: str
    status: str
    task: str
    agent: str
    tools: str
    approvals: int
    required: int
    review_owed: bool
    reason: str


def emergencies(requests: Sequence[BreakGlass], now: datetime) -> list[Emergency]:
    """Break-glass is loud: every active or pending request, and every review still owed."""
    lines = []
    for bg in requests:
        state = bg.state_at(now)
        if state not in (BreakGlassState.ACTIVE, BreakGlassState.PENDING) and not bg.needs_review:
            continue
        status = state.value.upper()
        if state is BreakGlassState.ACTIVE and bg.active_until is not None:
            status += f" until {bg.active_until.strftime('%H:%M:%S UTC')}"
        tools = ", ".join(f"{a.value} {s.tool}" for s in bg.scopes for a in sorted(s.actions))
        lines.append(
            Emergency(
                id=bg.breakglass_id,
                status=status,
                task=bg.task_id,
                agent=bg.agent,
                tools=tools,
                approvals=bg.approvals,
                required=bg.required,
                review_owed=bg.needs_review,
                reason=bg.reason,
            )
        )
    return lines


def _call_line(approval: Approval) -> str:
    call = f"{approval.tool} · {approval.action.value}"
    return f"{call} · {approval.dataset}" if approval.dataset else call


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    state: str
    agent: str
    call: str
    approvals: int
    required: int
    expires: Moment


def list_page(
    approvals: Sequence[Approval],
    now: datetime,
    who: Approver,
    csrf: str,
    limit: int,
    breakglass: Sequence[BreakGlass] = (),
) -> str:
    """Every approval, pending first (soonest to expire first), then the newest decided ones."""

    def order(a: Approval) -> tuple[int, float]:
        if a.state_at(now) is ApprovalState.PENDING:
            return (0, a.expires_at.timestamp())
        return (1, -a.created_at.timestamp())

    rows = [
        Row(
            id=a.approval_id,
            state=a.state_at(now).value,
            agent=a.agent,
            call=_call_line(a),
            approvals=a.approvals,
            required=a.required,
            expires=moment(a.expires_at, now),
        )
        for a in sorted(approvals, key=order)
    ]
    return render(
        "ui/list.html",
        title="Approvals",
        who=who,
        csrf=csrf,
        emergencies=emergencies(breakglass, now),
        pending=sum(1 for a in approvals if a.state_at(now) is ApprovalState.PENDING),
        limit=limit,
        rows=rows,
    )


@dataclass(frozen=True, slots=True)
class Vote:
    approver: str
    decision: str
    reason: str
    at: Moment


@dataclass(frozen=True, slots=True)
class Shown:
    """An approval as the detail page prints it."""

    id: str
    state: str
    approvals: int
    required: int
    more: int
    expires: Moment
    created: Moment
    summary: tuple[str, ...]
    tool: str
    action: str
    dataset: str | None
    args: str
    policy_ids: tuple[str, ...]
    why: str | None
    votes: tuple[Vote, ...]
    agent: str
    task: str
    decision: str
    used_by: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str


def _shown(approval: Approval, now: datetime) -> Shown:
    votes = tuple(
        Vote(
            approver=v.approver,
            decision=(ApprovalState.APPROVED if v.approve else ApprovalState.DENIED).value,
            reason=v.reason,
            at=moment(v.at, now),
        )
        for v in approval.votes
    )
    return Shown(
        id=approval.approval_id,
        state=approval.state_at(now).value,
        approvals=approval.approvals,
        required=approval.required,
        more=max(0, approval.required - approval.approvals),
        expires=moment(approval.expires_at, now),
        created=moment(approval.created_at, now),
        summary=tuple(approval.summary),
        tool=approval.tool,
        action=approval.action.value,
        dataset=approval.dataset,
        args=json.dumps(approval.args, indent=2, sort_keys=True, ensure_ascii=True),
        policy_ids=tuple(approval.policy_ids),
        why=approval.why,
        votes=votes,
        agent=approval.agent,
        task=approval.task_id,
        decision=approval.decision_id,
        used_by=approval.used_by,
    )


def detail_page(
    approval: Approval,
    now: datetime,
    who: Approver,
    csrf: str,
    error: tuple[str, str] | None = None,
) -> str:
    mine = next((v for v in approval.votes if v.approver == who.id), None)
    return render(
        "ui/detail.html",
        title=f"Approval {approval.approval_id}",
        who=who,
        csrf=csrf,
        a=_shown(approval, now),
        my_vote=None if mine is None else mine.approve,
        error=Problem(*error) if error else None,
        facts=FACTS_NOTE,
    )

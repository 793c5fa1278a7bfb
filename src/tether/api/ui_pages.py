"""HTML for the approver's web page: plain server-rendered pages, no JavaScript.

Every value is escaped on the way in: ``html()`` escapes each argument unless it is already
``Html`` (a fragment built by this module), the same rule as a template engine's autoescape.
Nothing from the agent (arguments, intent) or the request is ever trusted as markup.

Argument values are shown as JSON with non-ASCII escaped (``\\u202e``), so an approver sees the
exact characters sent, including invisible or right-to-left ones a fluent agent could use to
make a call look like another (OWASP ASI09).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Final

from tether.core.approval import Approval, ApprovalState
from tether.core.breakglass import BreakGlass, BreakGlassState
from tether.service.approvals import Approver

FACTS_NOTE: Final = "Facts written by tether; arguments are the agent's input, shown as sent."


class Html(str):
    """A fragment of markup built from escaped parts; safe to place in a page as is."""

    __slots__ = ()


def esc(value: object) -> Html:
    return value if isinstance(value, Html) else Html(escape(str(value), quote=True))


def html(template: str, /, **values: object) -> Html:
    """Fill a constant ``template``: every value is escaped unless it is ``Html``."""
    return Html(template.format(**{name: esc(value) for name, value in values.items()}))


def join(parts: Iterable[Html]) -> Html:
    return Html("".join(parts))


_CSS: Final = """
:root { color-scheme: light; --ink: #1d2430; --muted: #5b6577; --line: #d9dee7;
  --bg: #f5f7fa; --card: #fff; --accent: #1f4fd1; --ok: #17753a; --bad: #b3261e;
  --warn: #8a5a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--ink); background: var(--bg); }
header.top { background: #141a26; color: #fff; padding: 10px 24px; display: flex;
  align-items: center; justify-content: space-between; }
header.top a { color: #fff; text-decoration: none; font-weight: 600; letter-spacing: .02em; }
header.top .who { font-size: 13px; color: #c9d1e0; display: flex; gap: 12px;
  align-items: center; }
main { max-width: 980px; margin: 24px auto; padding: 0 24px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 16px 20px; margin-bottom: 16px; }
.sub { color: var(--muted); font-size: 13px; margin: 0 0 16px; }
.summary { border-left: 4px solid var(--accent); }
.summary ol { margin: 0; padding-left: 20px; }
.summary li { margin: 4px 0; }
.note { color: var(--muted); font-size: 13px; margin: 10px 0 0; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 8px 10px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
dl { display: grid; grid-template-columns: 140px 1fr; gap: 6px 16px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
code, pre { font: 13px/1.45 ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
pre { background: #f0f2f6; border: 1px solid var(--line); border-radius: 6px; padding: 10px;
  margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px;
  font-weight: 600; border: 1px solid currentColor; }
.state-pending { color: var(--warn); } .state-approved { color: var(--ok); }
.state-denied, .state-expired { color: var(--bad); } .state-used { color: var(--muted); }
.alert { border-radius: 6px; padding: 10px 14px; margin-bottom: 16px;
  border: 1px solid var(--bad); background: #fdecea; color: #5f1410; }
.alert code { font-weight: 600; }
.breakglass { border-width: 3px; background: #fbd5d0; }
.breakglass ul { margin: 6px 0 0 18px; padding: 0; }
.decide { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.decide form { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
label { display: block; font-size: 13px; color: var(--muted); margin-bottom: 4px; }
textarea, input[type=password] { width: 100%; padding: 8px; border: 1px solid #b9c1ce;
  border-radius: 6px; font: inherit; }
textarea { min-height: 64px; resize: vertical; }
button { margin-top: 10px; padding: 8px 18px; border-radius: 6px; border: 0; font: inherit;
  font-weight: 600; color: #fff; background: var(--accent); cursor: pointer; }
button.approve { background: var(--ok); } button.deny { background: var(--bad); }
button.link { background: none; color: #fff; padding: 0; margin: 0; font-weight: 400;
  text-decoration: underline; }
a { color: var(--accent); }
.empty { color: var(--muted); }
.narrow { max-width: 520px; margin: 40px auto; }
"""


def page(title: str, body: Html, *, who: Approver | None = None, csrf: str = "") -> Html:
    """The frame every page shares: a header (with sign-out when signed in) and the body."""
    account = Html("")
    if who is not None:
        account = html(
            '<span class="who">Signed in as <strong>{name}</strong>'
            '<form method="post" action="/ui/logout">{token}'
            '<button class="link" type="submit">Sign out</button></form></span>',
            name=who.name,
            token=csrf_field(csrf),
        )
    return html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · tether</title><style>{css}</style></head><body>"
        '<header class="top"><a href="/ui/approvals">tether · approvals</a>{account}</header>'
        "<main>{body}</main></body></html>",
        title=title,
        css=Html(_CSS),
        account=account,
        body=body,
    )


def csrf_field(token: str) -> Html:
    return html('<input type="hidden" name="csrf" value="{token}">', token=token)


def alert(message: str, code: str | None = None) -> Html:
    if code is None:
        return html('<div class="alert" role="alert">{message}</div>', message=message)
    return html(
        '<div class="alert" role="alert"><code>{code}</code>: {message}</div>',
        code=code,
        message=message,
    )


def state_badge(state: ApprovalState) -> Html:
    return html(
        '<span class="badge state-{state}" data-state="{state}">{state}</span>', state=state.value
    )


def when(at: datetime, now: datetime) -> Html:
    """An absolute UTC time with how far it is from ``now``."""
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
    return html(
        '<time datetime="{iso}">{shown}</time> <span class="sub">({relative})</span>',
        iso=at.isoformat(),
        shown=at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        relative=relative,
    )


def login_page(csrf: str, error: str | None = None) -> Html:
    body = html(
        '<div class="card narrow">'
        "<h1>Sign in to approve</h1>"
        '<p class="sub">Paste your approver token (it starts with <code>tap_</code>). '
        "Workload identities (SVIDs) can never approve.</p>{error}"
        '<form method="post" action="/ui/login">{token}'
        '<label for="approver-token">Approver token</label>'
        '<input id="approver-token" name="token" type="password" autocomplete="off" '
        'spellcheck="false" required autofocus>'
        '<button type="submit">Sign in</button></form></div>',
        error=alert(error) if error else Html(""),
        token=csrf_field(csrf),
    )
    return page("Sign in", body)


def message_page(title: str, message: str, *, code: str | None = None, link: str = "") -> Html:
    """A page that only says what went wrong (and where to go next)."""
    back = html('<p><a href="{link}">Continue</a></p>', link=link) if link else Html("")
    body = html("<h1>{title}</h1>{alert}{back}", title=title, alert=alert(message, code), back=back)
    return page(title, body)


def _call_line(approval: Approval) -> str:
    call = f"{approval.tool} · {approval.action.value}"
    return f"{call} · {approval.dataset}" if approval.dataset else call


NO_BANNER: Final = Html("")


def breakglass_banner(requests: Sequence[BreakGlass], now: datetime) -> Html:
    """Break-glass is loud: every active or pending request, and every review still owed."""
    lines = []
    for bg in requests:
        state = bg.state_at(now)
        if state not in (BreakGlassState.ACTIVE, BreakGlassState.PENDING) and not bg.needs_review:
            continue
        tools = ", ".join(f"{a.value} {s.tool}" for s in bg.scopes for a in sorted(s.actions))
        status = state.value.upper()
        if state is BreakGlassState.ACTIVE and bg.active_until is not None:
            status += f" until {bg.active_until.strftime('%H:%M:%S UTC')}"
        review = " · REVIEW OWED" if bg.needs_review else ""
        lines.append(
            html(
                '<li data-breakglass-id="{id}"><strong>BREAK-GLASS {status}</strong> '
                "<code>{id}</code> task <code>{task}</code> agent <code>{agent}</code>: "
                "{tools} ({n}/{required} approvals){review}<br><em>{reason}</em></li>",
                id=bg.breakglass_id,
                status=status,
                task=bg.task_id,
                agent=bg.agent,
                tools=tools,
                n=bg.approvals,
                required=bg.required,
                review=review,
                reason=bg.reason,
            )
        )
    if not lines:
        return Html("")
    return html(
        '<div class="alert breakglass" role="alert"><p><strong>Emergency elevation '
        "(break-glass)</strong>: scopes beyond policy, approved by two other humans, "
        "time-boxed, never inherited. Decide with <code>tether breakglass</code>.</p>"
        "<ul>{lines}</ul></div>",
        lines=join(lines),
    )


def list_page(
    approvals: Sequence[Approval],
    now: datetime,
    who: Approver,
    csrf: str,
    limit: int,
    banner: Html = NO_BANNER,
) -> Html:
    """Every approval, pending first (soonest to expire first), then the newest decided ones."""

    def order(a: Approval) -> tuple[int, float]:
        if a.state_at(now) is ApprovalState.PENDING:
            return (0, a.expires_at.timestamp())
        return (1, -a.created_at.timestamp())

    rows = [
        html(
            '<tr data-approval-id="{id}"><td>{state}</td><td><code>{agent}</code></td>'
            '<td><a href="/ui/approvals/{id}">{call}</a></td><td>{n} / {required}</td>'
            "<td>{expires}</td></tr>",
            id=a.approval_id,
            state=state_badge(a.state_at(now)),
            agent=a.agent,
            call=_call_line(a),
            n=a.approvals,
            required=a.required,
            expires=when(a.expires_at, now),
        )
        for a in sorted(approvals, key=order)
    ]
    pending = sum(1 for a in approvals if a.state_at(now) is ApprovalState.PENDING)
    table = (
        html(
            "<table><thead><tr><th>State</th><th>Agent</th><th>Call</th><th>Approvals</th>"
            "<th>Expires</th></tr></thead><tbody>{rows}</tbody></table>",
            rows=join(rows),
        )
        if rows
        else Html('<p class="empty">No approvals yet.</p>')
    )
    body = html(
        "{banner}<h1>Approvals</h1>"
        '<p class="sub">{pending} pending · showing up to the latest {limit}. '
        "Expiry means deny.</p>"
        '<div class="card">{table}</div>',
        banner=banner,
        pending=pending,
        limit=limit,
        table=table,
    )
    return page("Approvals", body, who=who, csrf=csrf)


def _pretty(args: object) -> str:
    return json.dumps(args, indent=2, sort_keys=True, ensure_ascii=True)


def _votes(approval: Approval, now: datetime) -> Html:
    if not approval.votes:
        return Html('<p class="empty">No votes yet.</p>')
    rows = [
        html(
            "<tr><td><code>{approver}</code></td><td>{decision}</td><td>{reason}</td>"
            "<td>{at}</td></tr>",
            approver=v.approver,
            decision=state_badge(ApprovalState.APPROVED if v.approve else ApprovalState.DENIED),
            reason=v.reason or "(no reason given)",
            at=when(v.at, now),
        )
        for v in approval.votes
    ]
    return html(
        "<table><thead><tr><th>Approver</th><th>Decision</th><th>Reason</th><th>At</th></tr>"
        "</thead><tbody>{rows}</tbody></table>",
        rows=join(rows),
    )


def _decide(approval: Approval, now: datetime, who: Approver, csrf: str) -> Html:
    state = approval.state_at(now)
    mine = next((v for v in approval.votes if v.approver == who.id), None)
    if state is not ApprovalState.PENDING:
        return html(
            '<p class="sub">This approval is <strong>{state}</strong>; '
            "it can no longer be decided.</p>",
            state=state.value,
        )
    if mine is not None:
        return html(
            '<p class="sub">You have {verb} this call; it waits for {more} more distinct '
            "approver(s).</p>",
            verb="approved" if mine.approve else "denied",
            more=max(0, approval.required - approval.approvals),
        )
    form = (
        '<form method="post" action="/ui/approvals/{id}/{verb}">{token}'
        '<label for="reason-{verb}">Reason for {label_lower} (recorded in the audit log)</label>'
        '<textarea id="reason-{verb}" name="reason" maxlength="1000" required></textarea>'
        '<button class="{verb}" type="submit">{label}</button></form>'
    )
    return html(
        '<div class="decide">{approve}{deny}</div>',
        approve=html(
            form,
            id=approval.approval_id,
            verb="approve",
            label="Approve",
            label_lower="approving",
            token=csrf_field(csrf),
        ),
        deny=html(
            form,
            id=approval.approval_id,
            verb="deny",
            label="Deny",
            label_lower="denying",
            token=csrf_field(csrf),
        ),
    )


def detail_page(
    approval: Approval,
    now: datetime,
    who: Approver,
    csrf: str,
    error: tuple[str, str] | None = None,
) -> Html:
    state = approval.state_at(now)
    lines = join(html("<li>{line}</li>", line=line) for line in approval.summary)
    policies = join(html("<code>{p}</code> ", p=p) for p in approval.policy_ids) or Html("none")
    used = (
        html("<dt>Used by decision</dt><dd><code>{d}</code></dd>", d=approval.used_by)
        if approval.used_by
        else Html("")
    )
    body = html(
        '<p class="sub"><a href="/ui/approvals">← All approvals</a></p>'
        "<h1>Approval <code>{id}</code> {state}</h1>"
        '<p class="sub">{n} of {required} required approvals · expires {expires}</p>'
        "{error}"
        '<section class="card summary" aria-labelledby="summary-h">'
        '<h2 id="summary-h">Summary</h2><ol id="summary">{lines}</ol>'
        '<p class="note">{facts}</p></section>'
        '<section class="card" aria-labelledby="decide-h"><h2 id="decide-h">Decision</h2>'
        "{decide}</section>"
        '<section class="card" aria-labelledby="call-h"><h2 id="call-h">The exact call</h2><dl>'
        "<dt>Tool</dt><dd><code>{tool}</code></dd>"
        "<dt>Action</dt><dd><code>{action}</code></dd>"
        "<dt>Dataset</dt><dd>{dataset}</dd>"
        '<dt>Arguments</dt><dd><pre id="arguments">{args}</pre></dd>'
        "</dl></section>"
        '<section class="card" aria-labelledby="policy-h"><h2 id="policy-h">Why policy asked'
        "</h2><dl><dt>Policies</dt><dd>{policies}</dd><dt>Why</dt><dd>{why}</dd></dl></section>"
        '<section class="card" aria-labelledby="votes-h"><h2 id="votes-h">Votes</h2>{votes}'
        "</section>"
        '<section class="card" aria-labelledby="ids-h"><h2 id="ids-h">Record</h2><dl>'
        "<dt>Agent</dt><dd><code>{agent}</code></dd>"
        "<dt>Task</dt><dd><code>{task}</code></dd>"
        "<dt>Decision</dt><dd><code>{decision}</code></dd>"
        "<dt>Created</dt><dd>{created}</dd>{used}</dl></section>",
        id=approval.approval_id,
        state=state_badge(state),
        n=approval.approvals,
        required=approval.required,
        expires=when(approval.expires_at, now),
        error=alert(error[1], error[0]) if error else Html(""),
        lines=lines,
        facts=FACTS_NOTE,
        decide=_decide(approval, now, who, csrf),
        tool=approval.tool,
        action=approval.action.value,
        dataset=html("<code>{d}</code>", d=approval.dataset) if approval.dataset else "none",
        args=_pretty(approval.args),
        policies=policies,
        why=approval.why or "(no reason recorded)",
        votes=_votes(approval, now),
        agent=approval.agent,
        task=approval.task_id,
        decision=approval.decision_id,
        created=when(approval.created_at, now),
        used=used,
    )
    return page(f"Approval {approval.approval_id}", body, who=who, csrf=csrf)

"""``tether demo``: a real server on loopback and a scripted agent calling it over HTTP.

The agent opens a task, makes calls that tether allows, denies or sends for approval, reports
effects, closes the task and replays its closed grant. The demo prints each call with its verdict,
verifies the audit chain, stops the server, and exits non-zero if any verdict was not the expected
one, so it doubles as an end-to-end check.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tether.cli.browser import browser_client, page_csrf
from tether.cli.common import console, fail
from tether.cli.demo_downstream import payments_api
from tether.cli.demo_output import markdown, print_plain
from tether.cli.exits import ExitCode
from tether.cli.output import print_json
from tether.core.audit import verify_chain
from tether.reports import flips, privileges
from tether.runtime import (
    RuntimeConfig,
    approver_registry,
    dev_issuer,
    open_store,
    packaged_policies,
)
from tether.service.clock import SystemClock

INTENT = {
    "workflow": "support-triage",
    "purpose": "answer a customer's refund question",
    "on_behalf_of": "user:alice@example.com",
}
SCOPES: list[dict[str, Any]] = [
    {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]},
    {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 10}},
    },
    {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}},
    # Granted but never used in the demo: the privileges report shows it.
    {
        "tool": "email.send",
        "actions": ["send"],
        "constraints": {"to": {"ends_with": ["@example.com"]}},
    },
]


@dataclass
class Step:
    label: str
    agent: str
    call: dict[str, Any]
    expect: str
    effect: dict[str, Any] | None = None


STEPS = [
    Step(
        "read customer records in scope",
        "analyst",
        {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {"customer": "c-1042"}},
        "allow",
        {"status": "ok", "records": 3, "bytes": 2048},
    ),
    Step(
        "give a 50% discount (grant caps it at 10)",
        "analyst",
        {
            "tool": "crm.update",
            "action": "write",
            "dataset": "tickets",
            "args": {"ticket": "T-88", "discount": 50},
        },
        "deny",
    ),
    Step(
        "read payroll (dataset not granted)",
        "analyst",
        {"tool": "crm.query", "action": "read", "dataset": "payroll", "args": {}},
        "deny",
    ),
    Step(
        "give a 5% discount",
        "analyst",
        {
            "tool": "crm.update",
            "action": "write",
            "dataset": "tickets",
            "args": {"ticket": "T-88", "discount": 5},
        },
        "allow",
        {"status": "ok", "records": 1, "bytes": 120},
    ),
    Step(
        "refund 500 (policy wants a human)",
        "analyst",
        {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}},
        "approval_required",
    ),
    Step(
        "another agent replays the analyst's grant",
        "intruder",
        {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {}},
        "deny",
    ),
]


def _privileges_summary(workdir: Path) -> None:
    """What the agent was granted and never used: the least-privilege report; and what the
    observe-mode policies would have changed."""
    store = open_store(workdir)
    try:
        records = list(store.audit_records())
    finally:
        store.close()
    report = privileges(records)
    for group in report.groups:
        if group.ratio is None:
            continue
        unused = ", ".join(f"{t.action.value} {t.tool}" for t in group.unused) or "nothing"
        agent = group.agent.rsplit("/", 1)[-1]
        console.print(
            f"privileges: {agent} in {group.workflow}: used {len(group.used_granted)} of "
            f"{len(group.granted)} granted "
            f"(ratio {float(group.ratio):.2f}); unused: {escape(unused)}",
            highlight=False,
        )
    console.print(f"[dim]full report: tether report privileges -d {workdir} --html report.html[/]")
    for row in flips(records).rows:
        console.print(
            f"observe mode: policy {row.policy_id} would turn {row.calls} {row.was.value} of "
            f"{row.agent.rsplit('/', 1)[-1]} on {row.tool} into {row.would.value}",
            highlight=False,
        )
    console.print(f"[dim]flips: tether report flips -d {workdir}[/]")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(client: httpx.Client, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            fail(
                "the demo server exited during start-up; run `tether serve` to see why",
                "demo",
                ExitCode.UNAVAILABLE,
            )
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    fail(f"the demo server was not ready within {timeout:.0f}s", "demo", ExitCode.UNAVAILABLE)


def _verdict_cell(decision: str) -> str:
    colour = {"allow": "green", "deny": "red", "approval_required": "yellow"}.get(decision, "white")
    return f"[{colour}]{decision}[/]"


def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", "-d", help="Keep the demo's data here (a temp dir otherwise)."),
    ] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", "-p", file_okay=False, exists=True)
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the calls and the audit check as JSON; the narrative to stderr."
        ),
    ] = False,
    as_markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="Print the calls as the README's Markdown table; the narrative to stderr.",
        ),
    ] = False,
) -> None:
    """Start a real server on loopback, run a scripted agent against it, verify the audit log."""
    if as_json and as_markdown:
        fail("give --json or --markdown, not both", "usage", ExitCode.USAGE)
    output = "json" if as_json else "markdown" if as_markdown else "table"
    if output != "table":
        console.file = sys.stderr  # stdout carries the document alone
    try:
        _demo(data_dir, policies, output)
    finally:
        console.file = None  # type: ignore[assignment]  # back to stdout (rich's default)


def _demo(data_dir: Path | None, policies: Path | None, output: str) -> None:
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="tether-demo-"))
    policy_dir = policies or packaged_policies()
    port = _free_port()
    banner = (
        f"tether demo: server on http://127.0.0.1:{port}, data in {workdir}, policies {policy_dir}"
    )
    console.print(Panel.fit(banner, style="bold") if console.is_terminal else banner, markup=False)
    env = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "tether",
            "serve",
            "--data-dir",
            str(workdir),
            "--policies",
            str(policy_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    failures = 0
    calls: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            _wait_ready(client, server, 30)
            failures = _run_agent(client, workdir, calls, table=output == "table")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    store = open_store(workdir)
    try:
        report = verify_chain(store.audit_records(), store.chain_head())
    finally:
        store.close()
    _privileges_summary(workdir)
    if report.ok:
        console.print(
            f"audit chain: [green]intact[/], {report.records} records "
            f"(tether audit verify -d {workdir})"
        )
    else:
        console.print(
            f"audit chain: [red]broken at record {report.first_bad_seq}[/]: {report.problem}"
        )
        failures += 1
    if output == "markdown":
        sys.stdout.write(markdown(calls))
    if output == "json":
        print_json(
            {
                "data_dir": str(workdir),
                "calls": calls,
                "audit": {"intact": report.ok, "records": report.records},
                "ok": failures == 0,
            }
        )
    if failures:
        fail(f"{failures} demo step(s) did not go as expected", "demo", ExitCode.CHECK_FAILED)
    console.print("[bold green]demo complete[/]: every call got the expected verdict")


def _approve_on_the_web_page(
    client: httpx.Client, token: str, approval_id: str, reason: str
) -> str:
    """Sign in to the approver's page and submit its Approve form, as a browser would."""
    with browser_client(str(client.base_url), timeout=10) as browser:
        login = browser.get("/ui/login")
        browser.post("/ui/login", data={"token": token, "csrf": page_csrf(login.text)})
        shown = browser.get(f"/ui/approvals/{approval_id}")
        browser.post(
            f"/ui/approvals/{approval_id}/approve",
            data={"reason": reason, "csrf": page_csrf(shown.text)},
        )
    shown = client.get(
        f"/v1/approvals/{approval_id}", headers={"Authorization": f"Bearer {token}"}
    ).json()
    return str(shown.get("state"))


def _exfiltration_guards(
    client: httpx.Client, task: dict[str, Any], auth: Any, run: Any, number: int
) -> int:
    """Budgets, data-flow and declared workflows: the read-heavy agent's guard rails."""
    mail = {"tool": "email.send", "action": "send", "args": {"to": "bob@example.com"}}
    run(
        str(number + 1),
        Step("email after reading confidential CRM data", "analyst", mail, "approval_required"),
    )
    analytics = client.post(
        "/v1/tasks",
        json={
            "intent": {**INTENT, "workflow": "weekly-analytics"},
            "scopes": [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}],
            "budgets": {"records": 100},
        },
        headers=auth("analyst"),
    ).json()
    console.print("opened an analytics task with a budget of 100 records")
    read = {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {}}
    run(
        str(number + 2),
        Step("analytics read, up to 60 records", "analyst", read, "allow"),
        grant=analytics["grant"],
        expect={"records": 60},
    )
    run(
        str(number + 3),
        Step("another 60 records: over the budget", "analyst", read, "deny"),
        grant=analytics["grant"],
        expect={"records": 60},
    )
    refund = client.post(
        "/v1/tasks",
        json={
            "intent": {**INTENT, "workflow": "refund"},
            "scopes": [
                {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]},
                {"tool": "payments.transfer", "actions": ["spend"]},
            ],
        },
        headers=auth("analyst"),
    ).json()
    console.print("opened a task declaring the 'refund' workflow: lookup → refund → notify")
    spend = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 40}}
    run(
        str(number + 4),
        Step("refund before looking the order up", "analyst", spend, "deny"),
        grant=refund["grant"],
    )
    return number + 4


def _delegate(
    client: httpx.Client, task: dict[str, Any], auth: Any, run: Any, number: int
) -> tuple[int, str]:
    """The analyst hands a narrower slice of its task to a helper agent."""
    narrower = {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 5}},
    }
    child = client.post(
        f"/v1/tasks/{task['task_id']}/delegate",
        json={
            "grant": task["grant"],
            "agent": "spiffe://tether.local/agent/helper",
            "scopes": [narrower],
        },
        headers=auth("analyst"),
    ).json()
    chain = " → ".join([*child.get("delegation", {}).get("chain", []), "helper"])
    console.print(f"delegated crm.update (discount ≤ 5) to helper: {escape(chain)}")
    write = {"tool": "crm.update", "action": "write", "dataset": "tickets"}
    run(
        str(number + 1),
        Step(
            "helper writes within its narrower scope",
            "helper",
            {**write, "args": {"discount": 5}},
            "allow",
        ),
        grant=child["grant"],
    )
    run(
        str(number + 2),
        Step(
            "helper exceeds its own cap (parent's is 10)",
            "helper",
            {**write, "args": {"discount": 8}},
            "deny",
        ),
        grant=child["grant"],
    )
    return number + 2, str(child["grant"])


def _demo_approver(workdir: Path, name: str) -> str:
    """A token for the demo's approver ``name``: a new one each time the demo needs it (on a
    data directory used before, or a second time in one run, the approver already exists)."""
    registry = approver_registry(workdir)
    return registry.add(name, rotate=name in registry.names)


def _break_glass(
    client: httpx.Client, workdir: Path, task: dict[str, Any], run: Any, number: int
) -> int:
    """An on-call human asks for emergency scope; two others approve; the call goes through."""
    people = {
        name: {"Authorization": f"Bearer {_demo_approver(workdir, name)}"}
        for name in ("oncall", "security", "ops-lead")
    }
    purge = {"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}
    bg = client.post(
        f"/v1/tasks/{task['task_id']}/breakglass",
        json={"scopes": [purge], "reason": "purge a poisoned CRM record now"},
        headers=people["oncall"],
    ).json()
    for name in ("security", "ops-lead"):
        bg = client.post(
            f"/v1/breakglass/{bg['breakglass_id']}/approve",
            json={"reason": "incident INC-42"},
            headers=people[name],
        ).json()
    console.print(
        f"[bold red]BREAK-GLASS {bg.get('breakglass_id')}: {bg.get('state')}[/] "
        f"(requested by oncall, approved by security and ops-lead, until "
        f"{str(bg.get('active_until'))[:19]}; review owed)",
        highlight=False,
    )
    call = {"tool": "crm.purge", "action": "delete", "dataset": "crm", "args": {"record": "c-666"}}
    run(str(number + 1), Step("purge under break-glass (beyond policy)", "analyst", call, "allow"))
    return number + 1


def _approve_and_retry(
    client: httpx.Client,
    workdir: Path,
    step: Step,
    verdict: dict[str, Any],
    run: Any,
    number: int,
) -> tuple[int, dict[str, Any]]:
    """A human approves the exact call; the agent retries once with the approval, then again.
    Returns the allowed retry's verdict too: it carries the call's just-in-time credential."""
    approval_id = verdict["approval_id"]
    token = _demo_approver(workdir, "ops-lead")
    human = {"Authorization": f"Bearer {token}"}
    shown = client.get(f"/v1/approvals/{approval_id}", headers=human).json()
    console.print(f"approval {approval_id} waits for a human; tether's summary:")
    for line in shown.get("summary", []):
        console.print(f"  [dim]{escape(line)}[/]", highlight=False)
    state = _approve_on_the_web_page(
        client, token, approval_id, "refund confirmed with the customer"
    )
    console.print(f"approver ops-lead clicked Approve on /ui/approvals/{approval_id}: {state}")
    retry = Step(
        "retry with the approval",
        step.agent,
        step.call,
        "allow",
        {"status": "ok", "records": 1, "bytes": 64},
    )
    allowed = run(str(number + 1), retry, approval_id=approval_id)
    replay = Step("replay the used approval", step.agent, step.call, "deny")
    run(str(number + 2), replay, approval_id=approval_id)
    return number + 2, allowed


def _use_credential(
    payments_url: str, credential: dict[str, Any] | None, expect: int
) -> tuple[bool, str, str]:
    """The agent calls the payments API with the scoped token the refund's allow carried;
    returns whether the API answered ``expect``, the verdict cell and the API's explanation."""
    if credential is None:
        return False, "[red]no credential[/]", "the approved refund carried no credential"
    response = httpx.post(
        f"{payments_url}/refunds",
        headers={"Authorization": f"Bearer {credential['value']}"},
        json={"amount": 500, "to": "c-1042"},
        timeout=10,
    )
    accepted = response.status_code == 200
    cell = "[green]accepted[/]" if accepted else f"[red]refused ({response.status_code})[/]"
    if response.status_code != expect:
        cell += f" [red](expected {expect})[/]"
    detail = response.json().get("error") or (
        f"lease {credential['lease_id']}: aud {credential['audience']}, "
        f"expires {credential['expires_at'][11:19]}"
    )
    return response.status_code == expect, cell, detail


def _run_agent(
    client: httpx.Client, workdir: Path, calls: list[dict[str, Any]], *, table: bool
) -> int:
    """Run the scripted agent; each call goes into ``calls`` and, when ``table``, into the table
    printed at the end. Returns how many calls did not get the expected verdict."""
    issuer = dev_issuer(RuntimeConfig(data_dir=workdir, environ={}))
    now = SystemClock().now()
    svids = {
        name: issuer.mint_svid(name, audience="tether", now=now, ttl_seconds=600)
        for name in ("analyst", "intruder", "helper")
    }

    def auth(agent: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {svids[agent]}"}

    opened = client.post(
        "/v1/tasks",
        json={"intent": INTENT, "scopes": SCOPES, "ttl_seconds": 300},
        headers=auth("analyst"),
    )
    if opened.status_code != 201:
        fail(
            f"opening the task failed: {opened.status_code} {opened.text}",
            "demo",
            ExitCode.CHECK_FAILED,
        )
    task = opened.json()
    granted = ", ".join(f"{s['tool']}({'/'.join(s['actions'])})" for s in task["granted"])
    console.print(f"opened task [bold]{task['task_id']}[/] for analyst, granted: {granted}")

    rows = Table("#", "agent", "call", "verdict", "reasons", "risks", "effect", title="calls")
    failures = 0

    def run(number: str, step: Step, **extra: Any) -> dict[str, Any]:
        nonlocal failures
        body = {"grant": task["grant"], **step.call, **extra}
        verdict = client.post("/v1/authorize", json=body, headers=auth(step.agent)).json()
        decision = verdict.get("decision", "error")
        effect_cell = ""
        if decision == "allow" and step.effect is not None:
            reported = client.post(
                "/v1/effects",
                json={"decision_id": verdict["decision_id"], **step.effect},
                headers=auth(step.agent),
            )
            effect_cell = (
                _records(step.effect.get("records")) if reported.status_code == 201 else "failed"
            )
        ok = decision == step.expect
        failures += 0 if ok else 1
        reasons = escape(
            "; ".join(f"{r['code']}: {r['message']}" for r in verdict.get("reasons", []))
        )
        call = step.call
        target = f" [{call['dataset']}]" if call.get("dataset") else ""
        chain = [str(actor) for actor in verdict.get("delegation", {}).get("chain", [])]
        calls.append(
            {
                "number": int(number),
                "step": step.label,
                "agent": step.agent,
                "via": chain,
                "call": call,
                "decision": decision,
                "expected": step.expect,
                "ok": ok,
                "decision_id": verdict.get("decision_id"),
                "approval_id": verdict.get("approval_id"),
                "reasons": verdict.get("reasons", []),
                "risks": verdict.get("risks", []),
                "policy_ids": verdict.get("policy_ids", []),
                "effect": effect_cell or None,
            }
        )
        rows.add_row(
            number,
            step.agent
            + "".join(
                f"\n[dim]via {escape(actor.rsplit('/', 1)[-1])}[/]"
                for actor in verdict.get("delegation", {}).get("chain", [])
            ),
            escape(f"{call['action']} {call['tool']}{target} {call.get('args') or ''}")
            + f"\n[dim]{escape(step.label)}[/]",
            _verdict_cell(decision) + ("" if ok else f" [red](expected {step.expect})[/]"),
            reasons,
            ",".join(verdict.get("risks", [])),
            effect_cell,
        )
        return dict(verdict)

    number = 0
    credential: dict[str, Any] | None = None
    for step in STEPS:
        number += 1
        verdict = run(str(number), step)
        if verdict.get("decision") == "approval_required":
            number, allowed = _approve_and_retry(client, workdir, step, verdict, run, number)
            credential = allowed.get("credential")

    def payments_svid() -> str:
        now = SystemClock().now()
        return issuer.mint_svid("payments-api", audience="tether", now=now, ttl_seconds=300)

    def use_credential(when: str, expect: int) -> None:
        nonlocal failures, number
        number += 1
        ok, verdict_cell, detail = _use_credential(payments_url, credential, expect)
        failures += 0 if ok else 1
        calls.append(
            {
                "number": number,
                "step": f"POST payments API /refunds with the approved refund's token, {when}",
                "agent": "analyst",
                "decision": Text.from_markup(verdict_cell).plain,
                "expected": "accepted" if expect == 200 else "refused",
                "ok": ok,
                "detail": detail,
            }
        )
        rows.add_row(
            str(number),
            "analyst",
            f"POST payments API /refunds\n[dim]with the approved refund's scoped token, {when}[/]",
            verdict_cell,
            escape(detail),
            "",
            "",
        )

    with payments_api(str(client.base_url), payments_svid) as payments_url:
        use_credential("before the task closes", 200)
        number = _exfiltration_guards(client, task, auth, run, number)
        number, child_grant = _delegate(client, task, auth, run, number)
        number = _break_glass(client, workdir, task, run, number)
        closed = client.post(f"/v1/tasks/{task['task_id']}/close", headers=auth("analyst"))
        console.print(
            f"closed task: {closed.json().get('state', closed.text)} (and every delegate, "
            "and every lease)"
        )
        use_credential("after the task closed", 401)
    number += 1
    run(
        str(number),
        Step(
            "helper's delegated grant after the parent closed",
            "helper",
            {
                "tool": "crm.update",
                "action": "write",
                "dataset": "tickets",
                "args": {"discount": 5},
            },
            "deny",
        ),
        grant=child_grant,
    )
    run(
        str(number + 1),
        Step(
            "replay the closed task's grant",
            "analyst",
            {"tool": "crm.query", "action": "read", "dataset": "crm", "args": {}},
            "deny",
        ),
    )
    if table:
        _print_calls(rows, calls)
    return failures


def _print_calls(rows: Table, calls: list[dict[str, Any]]) -> None:
    """The calls as the rich table on a terminal; in a pipe, one tab-separated line a call."""
    if console.is_terminal:
        console.print(rows)
    else:
        print_plain(calls)


def _records(count: object) -> str:
    return "1 record" if count == 1 else f"{count} records"

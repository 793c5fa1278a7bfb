"""``tether breakglass``: request, approve, deny, list and review emergency elevation."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from tether.cli.approvals import DEFAULT_URL, Token, Url, _request
from tether.cli.common import console, fail
from tether.cli.output import AsJson, Column, instant, print_json, print_table

app = typer.Typer(
    help="Emergency elevation: scopes beyond policy, time-boxed, approved by two other humans, "
    "never inherited, reviewed afterwards."
)


def _parse_scopes(raw: list[str]) -> list[Any]:
    scopes = []
    for item in raw:
        try:
            scope = json.loads(item)
        except ValueError:
            fail(
                f"--scope {item!r} is not JSON; e.g. "
                '\'{"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}\'',
                "invalid_scope",
            )
        scopes.append(scope)
    return scopes


def _show(item: dict[str, Any]) -> None:
    state = item["state"]
    colour = {"active": "bold red", "pending": "yellow"}.get(state, "white")
    console.print(
        f"[{colour}]BREAK-GLASS {item['breakglass_id']}: {state}[/] "
        f"({item['approvals']}/{item['required']} approvals) task {item['task_id']}",
        highlight=False,
    )
    console.print(f"  agent {item['agent']}; requested by {item['requested_by']}", markup=False)
    console.print(f"  reason: {item['reason']}", markup=False)
    for scope in item["scopes"]:
        console.print(f"  scope: {json.dumps(scope, sort_keys=True)}", markup=False)
    if item["active_until"]:
        console.print(f"  active until {instant(item['active_until'])}", markup=False)
    if item["needs_review"]:
        console.print("  [bold]review pending[/]: tether breakglass review ID --note …")


def _answer(item: dict[str, Any], as_json: bool) -> None:
    """The request as the server returned it, whole, with ``--json``; else for a person."""
    if as_json:
        print_json(item)
    else:
        _show(item)


@app.command("request")
def request(
    task: Annotated[str, typer.Option("--task", help="The task to elevate.")],
    scope: Annotated[list[str], typer.Option("--scope", help="A scope as JSON; repeatable.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why; kept in the audit log.")],
    window: Annotated[int | None, typer.Option(help="Seconds active once approved.")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Ask for emergency scopes on a task (needs two other approvers)."""
    body: dict[str, Any] = {"scopes": _parse_scopes(scope), "reason": reason}
    if window is not None:
        body["window_seconds"] = window
    _answer(_request("POST", url, f"/v1/tasks/{task}/breakglass", token, json=body), as_json)


@app.command("list")
def list_requests(url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False) -> None:
    """All break-glass requests, newest first, with open reviews flagged."""
    items = _request("GET", url, "/v1/breakglass", token)
    if as_json:
        print_json(items)
        return
    print_table(
        "break-glass",
        [
            Column("id", key=True),
            Column("state"),
            Column("task", key=True),
            Column("agent", key=True),
            Column("approvals"),
            Column("review"),
        ],
        (
            [
                item["breakglass_id"],
                item["state"],
                item["task_id"],
                item["agent"],
                f"{item['approvals']}/{item['required']}",
                "OPEN" if item["needs_review"] else ("done" if item["review"] else "-"),
            ]
            for item in items
        ),
    )


@app.command("show")
def show(
    breakglass_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """One request in full."""
    _answer(_request("GET", url, f"/v1/breakglass/{breakglass_id}", token), as_json)


@app.command("approve")
def approve(
    breakglass_id: str,
    reason: Annotated[str, typer.Option("--reason", "-r")] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Approve (you must not be the requester)."""
    path = f"/v1/breakglass/{breakglass_id}/approve"
    _answer(_request("POST", url, path, token, json={"reason": reason}), as_json)


@app.command("deny")
def deny(
    breakglass_id: str,
    reason: Annotated[str, typer.Option("--reason", "-r")] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Deny; one no ends the request."""
    path = f"/v1/breakglass/{breakglass_id}/deny"
    _answer(_request("POST", url, path, token, json={"reason": reason}), as_json)


@app.command("review")
def review(
    breakglass_id: str,
    note: Annotated[str, typer.Option("--note", help="The post-incident review.")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Write the post-incident review; the request stays open until this is done."""
    path = f"/v1/breakglass/{breakglass_id}/review"
    _answer(_request("POST", url, path, token, json={"note": note}), as_json)

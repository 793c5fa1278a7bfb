"""``tether approvers`` (who may approve) and ``tether approvals`` (decide pending calls).

``approvals`` talks to a running server's API with an approver token, exactly as the web page
does, so the CLI can never do what an approver could not.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from tether.cli.common import DEFAULT_DATA_DIR, DataDir, console, fail, tether_errors
from tether.cli.exits import ExitCode, exit_code_for
from tether.cli.output import AsJson, Column, instant, print_json, print_table
from tether.core.errors import ErrorCode
from tether.runtime import approver_registry

approvers_app = typer.Typer(help="Manage who may approve (the embedded default's approvers).")
approvals_app = typer.Typer(help="List, read and decide pending approvals.")

Url = Annotated[
    str, typer.Option("--url", envvar="TETHER_URL", help="The tether server. Env: TETHER_URL.")
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="TETHER_APPROVER_TOKEN",
        help="Approver token (tap_…). Env: TETHER_APPROVER_TOKEN.",
        show_default=False,
    ),
]
DEFAULT_URL = os.environ.get("TETHER_URL", "http://127.0.0.1:8470")


@approvers_app.command("add")
def add_approver(
    name: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    rotate: Annotated[
        bool,
        typer.Option(
            "--rotate", help="Replace the token of existing approver NAME (the old one stops)."
        ),
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Create approver NAME and print its token once (only a digest is kept)."""
    with tether_errors():
        token = approver_registry(data_dir).add(name, rotate=rotate)
    if as_json:
        print_json({"name": name, "token": token, "rotated": rotate})
        return
    done = "given a new token (the old one no longer works)" if rotate else "added"
    console.print(f"approver [bold]{name}[/] {done}; its token (shown once):", highlight=False)
    typer.echo(token)


@approvers_app.command("list")
def list_approvers(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: AsJson = False) -> None:
    """List approver names."""
    with tether_errors():
        names = approver_registry(data_dir).names
    if as_json:
        print_json(list(names))
        return
    for name in names:
        typer.echo(name)
    if not names:
        console.print("no approvers yet: tether approvers add NAME")


@approvers_app.command("remove")
def remove_approver(
    name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: AsJson = False
) -> None:
    """Remove approver NAME; its token stops working."""
    with tether_errors():
        removed = approver_registry(data_dir).remove(name)
    if not removed:
        fail(f"no approver named {name!r}", "not_found", ExitCode.NOT_FOUND)
    if as_json:
        print_json({"name": name, "removed": True})
        return
    console.print(f"approver {name} removed")


def _request(method: str, url: str, path: str, token: str | None, **kw: Any) -> Any:
    import httpx  # here: the CLI's other commands start without it

    if not token:
        fail(
            "give an approver token with --token or TETHER_APPROVER_TOKEN",
            ErrorCode.MISSING_TOKEN,
            exit_code_for(ErrorCode.MISSING_TOKEN),
        )
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
            **kw,
        )
    except httpx.HTTPError as error:
        fail(
            f"cannot reach {url}: {type(error).__name__}; is `tether serve` running?",
            "unreachable",
            ExitCode.UNAVAILABLE,
        )
    if response.status_code >= 400:
        try:
            body = response.json()["error"]
            message, code = str(body["message"]), str(body["code"])
        except (ValueError, KeyError, TypeError):
            message, code = f"{response.status_code} from {url}", "http_error"
        fail(message, code, exit_code_for(response.status_code))
    return response.json()


@approvals_app.command("list")
def list_approvals(
    url: Url = DEFAULT_URL,
    token: Token = None,
    state: Annotated[
        str | None, typer.Option(help="pending, approved, denied, used, expired")
    ] = "pending",
    as_json: AsJson = False,
) -> None:
    """List approvals (pending ones by default)."""
    params = {"state": state} if state else {}
    items = _request("GET", url, "/v1/approvals", token, params=params)
    if as_json:
        print_json(items)
        return
    print_table(
        "approvals",
        [
            Column("approval", key=True),
            Column("state"),
            Column("agent", key=True),
            Column("call"),
            Column("approvals"),
            Column("expires"),
        ],
        (
            [
                item["approval_id"],
                item["state"],
                item["agent"],
                f"{item['action']} {item['tool']}",
                f"{item['approvals']}/{item['required']}",
                instant(item["expires_at"]),
            ]
            for item in items
        ),
    )


@approvals_app.command("show")
def show_approval(
    approval_id: str, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Show the facts an approver decides on."""
    item = _request("GET", url, f"/v1/approvals/{approval_id}", token)
    if as_json:
        print_json(item)
        return
    console.print(
        f"[bold]{item['approval_id']}[/] ({item['state']}, "
        f"{item['approvals']}/{item['required']} approvals)",
        highlight=False,
    )
    for line in item["summary"]:
        console.print(f"  {line}", highlight=False, markup=False)
    for vote in item["votes"]:
        verb = "approved" if vote["approve"] else "denied"
        console.print(
            f"  {vote['approver']} {verb} at {instant(vote['at'])}: {vote['reason']}", markup=False
        )


def _vote(
    verb: str, approval_id: str, url: str, token: str | None, reason: str, as_json: bool
) -> None:
    item = _request(
        "POST", url, f"/v1/approvals/{approval_id}/{verb}", token, json={"reason": reason}
    )
    if as_json:
        print_json(item)
        return
    console.print(
        f"{approval_id}: {item['state']} ({item['approvals']}/{item['required']} approvals)"
    )


@approvals_app.command("approve")
def approve(
    approval_id: str,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept in the audit log).")
    ] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Approve the exact call; the agent may then make it once."""
    _vote("approve", approval_id, url, token, reason, as_json)


@approvals_app.command("deny")
def deny(
    approval_id: str,
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="Why (kept in the audit log).")
    ] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Deny the call."""
    _vote("deny", approval_id, url, token, reason, as_json)

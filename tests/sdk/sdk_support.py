"""Shared pieces of the SDK tests: the scopes an agent asks for, a human approver speaking the
real approvals API, and the audit records a test reads back."""

from __future__ import annotations

from typing import Any

import httpx

from tether.runtime import Runtime

INTENT = {
    "workflow": "support-triage",
    "purpose": "answer a refund question",
    "on_behalf_of": "user:alice@example.com",
}
TICKETS = {
    "tool": "crm.update",
    "actions": ["write"],
    "datasets": ["tickets"],
    "constraints": {"discount": {"max": 10}},
}
PAYMENTS = {
    "tool": "payments.transfer",
    "actions": ["spend"],
    "constraints": {"amount": {"max": 1000}},
}
SCOPES = [TICKETS, PAYMENTS]


class Approver:
    """A human approver using tether's approvals API with an approver token."""

    def __init__(self, base_url: str, runtime: Runtime, name: str = "ops-lead") -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {runtime.approvers.add(name)}"}

    def pending(self) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.base_url}/v1/approvals", params={"state": "pending"}, headers=self.headers
        )
        response.raise_for_status()
        return list(response.json())

    def decide(self, approval_id: str, approve: bool = True) -> dict[str, Any]:
        verb = "approve" if approve else "deny"
        response = httpx.post(
            f"{self.base_url}/v1/approvals/{approval_id}/{verb}",
            json={"reason": "checked by a test"},
            headers=self.headers,
        )
        response.raise_for_status()
        return dict(response.json())


def audit(runtime: Runtime, kind: str) -> list[dict[str, Any]]:
    return [dict(r.body) for r in runtime.store.audit_records() if r.kind.value == kind]


def effects(runtime: Runtime) -> list[dict[str, Any]]:
    return audit(runtime, "effect")


def decisions(runtime: Runtime) -> list[dict[str, Any]]:
    return [d["verdict"] for d in audit(runtime, "decision")]


class Flaky:
    """A loopback HTTP server that misbehaves on purpose: each request is read in full, then
    the connection is dropped unanswered (``answers`` empty) or answered with the next status.
    It counts the requests that reached it."""

    def __init__(self, answers: list[int] | None = None) -> None:
        import socketserver
        import threading

        self.seen: list[str] = []
        self.answers = list(answers or [])
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline().decode()
                length = 0
                while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                self.rfile.read(length)
                outer.seen.append(line.split(" ")[0])
                if not outer.answers:
                    return  # drop the connection: the request reached the server
                status = outer.answers.pop(0)
                body = (
                    b'{"status": "ok"}'
                    if status == 200
                    else b'{"error": {"code": "store_unavailable", "message": "down"}}'
                )
                self.wfile.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port() -> str:
    """The URL of a loopback port nothing listens on: connecting is refused."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def tool_call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}

"""An agent trying the MCP gateway: it opens a task with ``tether serve``, then talks MCP to
``tether mcp-gateway`` with the official SDK client, and prints what it was shown and answered.

    export TETHER_SVID=$(tether dev svid --agent analyst --data-dir .tether)
    python -m tether.examples.mcp.agent [--tether-url URL] [--gateway-url URL]

Its task asks to read ``crm.query`` on the ``crm`` dataset and to write ``crm.update`` on
``tickets`` with a discount of at most 10; then it calls a tool in its grant, one over its
constraint and one outside its grant. It waits up to a minute for both servers to answer, so it
can be started right after them. Exits 1 if an answer is not the one expected.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import anyio
import httpx
import httpx2
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

WAIT_SECONDS = 60
SCOPES = [
    {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]},
    {
        "tool": "crm.update",
        "actions": ["write"],
        "datasets": ["tickets"],
        "constraints": {"discount": {"max": 10}},
    },
]
INTENT = {
    "workflow": "support-triage",
    "purpose": "answer a refund question",
    "on_behalf_of": "user:alice@example.com",
}
#: (tool, arguments, expected: "allow" or the reason code of the refusal)
CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("crm.query", {"customer": "c-1042"}, "allow"),
    ("crm.update", {"ticket": "T-7", "discount": 50}, "constraint_violated"),
    ("crm.purge", {"customer": "c-1042"}, "tool_not_in_scope"),
]


def open_task(tether_url: str, svid: str) -> str:
    """The grant token of a new task, once ``tether serve`` answers."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            response = httpx.post(
                f"{tether_url}/v1/tasks",
                json={"intent": INTENT, "scopes": SCOPES, "ttl_seconds": 600},
                headers={"Authorization": f"Bearer {svid}"},
                timeout=30,
            )
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"tether serve did not answer at {tether_url}") from None
            time.sleep(0.2)
    if response.status_code != 201:
        raise SystemExit(f"opening the task failed: {response.status_code} {response.text}")
    grant: str = response.json()["grant"]
    return grant


def outcome(result: Any) -> str:
    if not result.is_error:
        return "allow"
    error = (result.meta or {}).get("tether/error", {})
    reasons = error.get("reasons") or [{"code": error.get("code", "error")}]
    return str(reasons[0]["code"])


async def try_gateway(gateway_url: str, svid: str, grant: str) -> bool:
    headers = {"Authorization": f"Bearer {svid}", "X-Tether-Grant": grant}
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                Client(streamable_http_client(gateway_url, http_client=http), cache=None) as mcp,
            ):
                return await _session(mcp)
        except Exception as error:  # not up yet: the gateway may still be starting
            if time.monotonic() > deadline:
                raise SystemExit(f"the gateway did not answer at {gateway_url}: {error}") from None
            await anyio.sleep(0.2)


async def _session(mcp: Client) -> bool:
    listed = [tool.name for tool in (await mcp.list_tools()).tools]
    print(f"tools/list: {', '.join(listed)}")
    ok = listed == ["crm.query", "crm.update"]
    for tool, arguments, expected in CALLS:
        result = await mcp.call_tool(tool, arguments)
        got = outcome(result)
        text = " ".join(getattr(block, "text", "") for block in result.content)
        print(f"{tool} {arguments}: {got}: {text[:120]}")
        ok = ok and got == expected
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tether-url", default="http://127.0.0.1:8470")
    parser.add_argument("--gateway-url", default="http://127.0.0.1:8471/mcp")
    options = parser.parse_args()
    svid = os.environ.get("TETHER_SVID", "").strip()
    if not svid:
        raise SystemExit("set TETHER_SVID (tether dev svid --agent analyst --data-dir .tether)")
    grant = open_task(options.tether_url, svid)
    if not anyio.run(try_gateway, options.gateway_url, svid, grant):
        print("an answer was not the one expected", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

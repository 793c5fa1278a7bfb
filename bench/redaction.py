"""What redacting secrets costs on a 1 MiB answer (``tether.core.redact``, used by the MCP gateway
and the egress proxy).

    .venv/bin/python bench/redaction.py [--secrets 1,5,20] [--runs 15] [--proxy-runs 40]

The result is a realistic structured answer (9,000 records of words, numbers and escaped text,
~1 MiB of JSON). For each number of configured secrets it prints the median of:

    build          compiling the redactor (once per secret set, at gateway start or rotation)
    clean          a result holding no secret: the one search the gateway does per result
    dirty          a result holding one secret in five forms: redact and parse back
    bytes          ``Redactor.redact_bytes`` on the clean result's JSON: the egress proxy's
                   check of an uncoded body
    json.dumps     serializing the same result, as the gateway does anyway, for scale

and the ratio of ``clean`` to ``json.dumps``. Medians of ``--runs`` runs, interleaved.

Then the egress proxy's forwarder end to end (``tether.proxy.forward.Forwarder.send``: request,
1 MiB answer read over loopback from an upstream in a process of its own, headers and body
searched and redacted) on the same clean JSON: ``plain`` to an upstream with no secret (nothing
searched), ``redacted`` to one with a secret injected, and their ratio; medians of
``--proxy-runs`` interleaved runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from tether.core.redact import Redactor, dumps
from tether.core.secret import Secret
from tether.proxy.config import SecretRef, Upstream
from tether.proxy.forward import Answer, Forwarder, Outgoing


def result(rng: random.Random) -> dict[str, Any]:
    words = ["".join(rng.choices(string.ascii_letters + string.digits, k=8)) for _ in range(4000)]
    items = [
        {
            "id": i,
            "name": " ".join(rng.choices(words, k=8)),
            "note": 'line one\nline "two" / path',
            "amount": rng.random() * 1000,
        }
        for i in range(9000)
    ]
    return {
        "content": [{"type": "text", "text": "9000 records"}],
        "structuredContent": {"items": items},
    }


def with_secret(clean: dict[str, Any], secret: str) -> dict[str, Any]:
    raw = secret.encode()
    text = " ".join(
        [
            secret,
            base64.b64encode(b"x" + raw).decode(),
            raw.hex(),
            urllib.parse.quote(secret, safe=""),
            json.dumps({"k": secret}),
        ]
    )
    return {**clean, "content": [{"type": "text", "text": text}]}


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", default="1,5,20")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--proxy-runs", type=int, default=40)
    args = parser.parse_args()
    rng = random.Random(7)
    clean = result(rng)
    value: Any = clean
    wire = dumps(value)
    print(f"result: {len(wire) / 2**20:.2f} MiB of JSON; medians of {args.runs} runs, ms")
    print(
        f"{'secrets':>7} {'build':>8} {'clean':>8} {'dirty':>8} {'bytes':>10} "
        f"{'json.dumps':>11} {'clean/dumps':>12}"
    )
    for count in (int(n) for n in args.secrets.split(",")):
        row(rng, clean, wire, count, args.runs)
    proxy_row(wire, args.proxy_runs)


def row(rng: random.Random, clean: dict[str, Any], wire: bytes, count: int, runs: int) -> None:
    """One line of the table: ``count`` secrets of 24 characters."""
    secrets = [
        (f"secret-{i}", "".join(rng.choices(string.ascii_letters + "+/-", k=24)))
        for i in range(count)
    ]
    pairs = [(name, value.encode()) for name, value in secrets]
    dirty: Any = with_secret(clean, secrets[0][1])
    dirty_wire = dumps(dirty)
    build = median_ms(lambda: Redactor(pairs), max(3, runs // 3))
    redactor = Redactor(pairs)
    value: Any = clean
    assert redactor.redact_json(value, wire).found == ()
    assert redactor.redact_json(dirty, dirty_wire).found
    columns: dict[str, Callable[[], object]] = {
        "clean": lambda: redactor.redact_json(value, wire),
        "dirty": lambda: redactor.redact_json(dirty, dirty_wire),
        "scan": lambda: redactor.redact_bytes(wire),
        "dumps": lambda: dumps(value),
    }
    rounds: dict[str, list[float]] = {name: [] for name in columns}
    for _ in range(runs):  # interleaved, so a change of load hits every column alike
        for name, fn in columns.items():
            rounds[name].append(median_ms(fn, 1))
    m = {k: statistics.median(v) for k, v in rounds.items()}
    print(
        f"{count:>7} {build:>8.1f} {m['clean']:>8.1f} {m['dirty']:>8.1f} {m['scan']:>10.1f} "
        f"{m['dumps']:>11.1f} {m['clean'] / m['dumps']:>12.2f}"
    )


_UPSTREAM = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

body = open(sys.argv[1], "rb").read()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def proxy_row(wire: bytes, runs: int) -> None:
    """The forwarder on two clean 1 MiB bodies, to an upstream without and with a secret: the
    result's JSON as it is (escaped quotes and line breaks: the redactor's pattern runs), and
    the same with those escapes written out (no byte an escape starts with: only the exact
    forms are looked for)."""
    escaped = wire[: 2**20]  # one 1 MiB body (the proxy does not parse it)
    compact = escaped.replace(b"\\n", b" ").replace(b'\\"', b"'")
    assert not any(mark in compact for mark in (b"%", b"\\", b"&", b"\n", b"\r"))
    print(f"\nproxy forwarder, 1 MiB clean bodies; medians of {runs} runs, ms")
    print(f"{'body':>20} {'plain':>8} {'redacted':>9} {'ratio':>6}")
    for label, body in (("JSON, escapes", escaped), ("JSON, no escapes", compact)):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "body.json"
            path.write_bytes(body)
            upstream = subprocess.Popen(
                [sys.executable, "-c", _UPSTREAM, str(path)], stdout=subprocess.PIPE, text=True
            )
            try:
                assert upstream.stdout is not None
                url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}"
                plain, redacted = anyio.run(_forward, url, runs, body)
            finally:
                upstream.terminate()
                upstream.wait(timeout=20)
        print(f"{label:>20} {plain:>8.1f} {redacted:>9.1f} {redacted / plain:>6.2f}")


async def _forward(url: str, runs: int, wire: bytes) -> tuple[float, float]:
    secret = Secret("bench-secret+4f3e/2d1c=0b9a8f7e")
    bare = Upstream("bare", url, None, max_response_bytes=4 * 2**20)
    keyed = Upstream("keyed", url, SecretRef("bench-key"), max_response_bytes=4 * 2**20)
    out = Outgoing("GET", "/answer", {}, (), b"")
    async with Forwarder.new_client() as client:
        forwarder = Forwarder(client)
        redactor = forwarder.redactor(keyed, secret)
        cases: dict[str, Callable[[], Awaitable[Answer]]] = {
            "plain": lambda: forwarder.send(bare, out, None, None),
            "redacted": lambda: forwarder.send(keyed, out, secret, redactor),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(3):  # warm the connections
            for send in cases.values():
                await send()
        for _ in range(runs):  # interleaved, so a change of load hits both alike
            for name, send in cases.items():
                start = time.perf_counter()
                answer = await send()
                times[name].append(time.perf_counter() - start)
                assert answer.body == wire and not answer.redactions
    return statistics.median(times["plain"]) * 1000, statistics.median(times["redacted"]) * 1000


if __name__ == "__main__":
    main()

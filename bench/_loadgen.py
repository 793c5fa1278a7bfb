"""The load process of ``bench/throughput.py``: bounded HTTP/1.1 load on loopback, round by round.

It runs as its own process, so the load's CPU is not the measuring process's, and reads one round
per line of JSON on stdin; for each it answers one line of JSON on stdout, then waits for the next,
until stdin closes. A round is:

    {"connections": [{"host": "127.0.0.1", "port": 8470, "request": "POST /v1/authorize ..."}],
     "seconds": 5.0, "requests": null, "answer_key": "decision", "timeout": 120}

Each connection is one keep-alive TCP connection that sends its ready-made request (the whole
HTTP/1.1 message, body included) again and again, one at a time: ``len(connections)`` is the
concurrency, and it is bounded. A round ends after ``seconds`` or after ``requests`` requests in
all, whichever is set (or whichever comes first). Connections are opened before the clock starts.

The client speaks HTTP/1.1 on asyncio streams by hand, not with httpx: on a 2-core machine httpx's
per-request CPU is of the same order as a trivial endpoint's, so an httpx load would be the
bottleneck of the floor and flatter every ratio to it. The answer reports its own CPU time, so a
saturated client shows.

The answer: ``elapsed`` (s), ``sent``, ``answered``, ``statuses`` (code -> count), ``answers``
(the JSON body's ``answer_key`` value -> count), ``latencies_ms`` (one per answered request),
``cpu_seconds`` (this process, during the round), ``reconnects`` and ``errors`` (transport or
protocol failures, one line each, at most 20).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


class ProtocolError(Exception):
    """The server answered something this small client does not read."""


@dataclass
class Tally:
    remaining: int | None
    until: float
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def take(self) -> bool:
        """Claim the next request of the round, or say the round is over."""
        if time.perf_counter() >= self.until:
            return False
        if self.remaining is not None:
            if self.remaining <= 0:
                return False
            self.remaining -= 1
        self.sent += 1
        return True


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes the connection) of one HTTP/1.1 response."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    try:
        status = int(lines[0].split(" ", 2)[1])
    except (IndexError, ValueError):
        raise ProtocolError(f"bad status line {lines[0]!r}") from None
    length: int | None = None
    chunked = close = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding":
            chunked = "chunked" in value
        elif name == "connection":
            close = value == "close"
    if chunked:
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size + 2))
        await reader.readuntil(b"\r\n")  # no trailers are expected
        return status, b"".join(p[:-2] for p in parts), close
    if length is None:
        raise ProtocolError("a response with neither Content-Length nor chunked encoding")
    return status, await reader.readexactly(length), close


async def connection(
    host: str, port: int, request: bytes, answer_key: str, tally: Tally, opened: Any
) -> None:
    reader, writer = opened
    clock = time.perf_counter
    try:
        while tally.take():
            start = clock()
            writer.write(request)
            await writer.drain()
            status, body, close = await read_response(reader)
            tally.latencies_ms.append(round((clock() - start) * 1000, 4))
            tally.statuses[status] += 1
            try:
                payload = json.loads(body)
                answer = payload.get(answer_key) if isinstance(payload, dict) else None
            except ValueError:
                answer = None
            tally.answers[str(answer)] += 1
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                tally.reconnects += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError) as e:
        if len(tally.errors) < 20:
            tally.errors.append(f"{type(e).__name__}: {e}")
    finally:
        writer.close()


async def run_round(spec: dict[str, Any]) -> dict[str, Any]:
    targets = spec["connections"]
    opened = await asyncio.gather(*(asyncio.open_connection(t["host"], t["port"]) for t in targets))
    seconds = spec.get("seconds")
    cpu_before = time.process_time()
    start = time.perf_counter()
    tally = Tally(
        remaining=spec.get("requests"),
        until=start + seconds if seconds is not None else float("inf"),
    )
    await asyncio.wait_for(
        asyncio.gather(
            *(
                connection(
                    t["host"],
                    t["port"],
                    t["request"].encode("utf-8"),
                    spec["answer_key"],
                    tally,
                    pair,
                )
                for t, pair in zip(targets, opened, strict=True)
            )
        ),
        timeout=spec.get("timeout", 300),
    )
    elapsed = time.perf_counter() - start
    return {
        "elapsed": elapsed,
        "sent": tally.sent,
        "answered": len(tally.latencies_ms),
        "statuses": {str(k): v for k, v in tally.statuses.items()},
        "answers": dict(tally.answers),
        "latencies_ms": tally.latencies_ms,
        "cpu_seconds": time.process_time() - cpu_before,
        "reconnects": tally.reconnects,
        "errors": tally.errors,
    }


def main() -> None:
    # The measuring process stops this one (it closes stdin, or terminates it); a Ctrl-C on the
    # terminal is for that process to handle, in order.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = asyncio.run(run_round(json.loads(line)))
        except Exception as e:  # report it to the measuring process, which stops the run
            answer = {"fatal": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

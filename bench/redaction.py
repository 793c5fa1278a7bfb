"""What redacting the gateway's secrets costs on a 1 MiB tool result (``tether.core.redact``).

    .venv/bin/python bench/redaction.py [--secrets 1,5,20] [--runs 15]

The result is a realistic structured answer (9,000 records of words, numbers and escaped text,
~1 MiB of JSON). For each number of configured secrets it prints the median of:

    build          compiling the redactor (once per secret set, at gateway start or rotation)
    clean          a result holding no secret: the one search the gateway does per result
    dirty          a result holding one secret in five forms: redact and parse back
    leak scan      ``LeakScanner.find`` (the egress proxy's check) on the clean result
    json.dumps     serializing the same result, as the gateway does anyway, for scale

and the ratio of ``clean`` to ``json.dumps``. Medians of ``--runs`` runs, interleaved.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import string
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from tether.core.leaks import LeakScanner
from tether.core.redact import Redactor, dumps


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
    args = parser.parse_args()
    rng = random.Random(7)
    clean = result(rng)
    value: Any = clean
    wire = dumps(value)
    print(f"result: {len(wire) / 2**20:.2f} MiB of JSON; medians of {args.runs} runs, ms")
    print(
        f"{'secrets':>7} {'build':>8} {'clean':>8} {'dirty':>8} {'leak scan':>10} "
        f"{'json.dumps':>11} {'clean/dumps':>12}"
    )
    for count in (int(n) for n in args.secrets.split(",")):
        row(rng, clean, wire, count, args.runs)


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
    scanner = LeakScanner([v for _, v in pairs])
    value: Any = clean
    assert redactor.redact_json(value, wire).found == ()
    assert redactor.redact_json(dirty, dirty_wire).found
    columns: dict[str, Callable[[], object]] = {
        "clean": lambda: redactor.redact_json(value, wire),
        "dirty": lambda: redactor.redact_json(dirty, dirty_wire),
        "scan": lambda: scanner.find(wire),
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


if __name__ == "__main__":
    main()

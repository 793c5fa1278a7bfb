"""The cost of the argument-provenance check on a task holding 1,000 observed values.

Builds a :class:`~tether.core.provenance.ProvenanceIndex` from tool results that put 1,000
distinct values (URLs, domains, e-mail addresses, IBANs, dates) into a task, then times, one
call each per round and interleaved so the machine's noise falls on all alike:

  dict lookup            one lookup in a 1,000-entry dict (the floor of any per-value check)
  check: url             ``check_arguments`` on one ``url`` argument (``trusted``)
  check: iban + amount   two arguments of a transfer (``trusted`` and ``not_only_untrusted``)
  check: message body    a 300-character message body holding a link (``not_only_untrusted``)

and prints each median with its ratio to the dict lookup. The issue's budget is 20 µs added to
an authorize; quote the ratios (or the medians next to ``bench/decision.py``'s run on the same
machine), not one absolute number.

    .venv/bin/python bench/provenance.py [--rounds 5000] [--values 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from tether.core.provenance import (
    Need,
    Outcome,
    ProvenanceIndex,
    SinkRequirement,
    Source,
    Trust,
    check_arguments,
    fingerprints,
    observe,
)

KEY = os.urandom(32)


def observed(values: int) -> ProvenanceIndex:
    """An index holding ``values`` observed values (one more at most): tool results of five
    values each (a URL and its domain, an e-mail address, an account number, a date) and the
    result as a whole (a ``text`` value), a third of them from trusted tools."""
    index = ProvenanceIndex()
    i = 0
    while index.size < values:
        source = Source(f"tool{i % 7}", None, Trust.TRUSTED if i % 3 == 0 else Trust.UNTRUSTED)
        text = (
            f"See https://site{i}.example.com/page for details, write to user{i}@example.org,"
            f" pay DE{i:020d} by {2000 + i // 336}-{1 + i % 12:02d}-{1 + i % 28:02d}."
        )
        index = index.with_observations([observe(KEY, source, text)])
        i += 1
    return index


def measure(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(200):
        for fn in fns.values():
            fn()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append((clock() - start) / 1000.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--values", type=int, default=1000)
    args = parser.parse_args()

    index = observed(args.values)
    table = {f"{i:064x}": i for i in range(index.size)}
    probe = f"{index.size // 2:064x}"
    request, _complete = fingerprints(
        KEY, "Pay my rent to GB29 NWBK 6016 1331 9268 19 and read www.site3.example.com"
    )
    url = [SinkRequirement("url", Need.TRUSTED)]
    transfer = [
        SinkRequirement("recipient", Need.TRUSTED),
        SinkRequirement("amount", Need.NOT_ONLY_UNTRUSTED, Outcome.APPROVAL_REQUIRED),
    ]
    body = [SinkRequirement("body", Need.NOT_ONLY_UNTRUSTED)]
    message = (
        "Hi team, the summary of today's article is below. The full text is at "
        "https://site42.example.com/page and the figures are in the attached sheet. Please "
        "read it before Thursday's meeting, and tell me what you think of the second part, "
        "which I found the most convincing. Thanks, and see you all on Thursday."
    )

    fns: dict[str, Callable[[], object]] = {
        "dict lookup": lambda: table.get(probe),
        "check: url": lambda: check_arguments(
            {"url": "https://www.site3.example.com/"}, url, index, KEY, request
        ),
        "check: iban + amount": lambda: check_arguments(
            {"recipient": "GB29NWBK60161331926819", "amount": 1250.0},
            transfer,
            index,
            KEY,
            request,
        ),
        "check: message body": lambda: check_arguments(
            {"body": message}, body, index, KEY, request
        ),
    }
    samples = measure(fns, args.rounds)
    base = statistics.median(samples["dict lookup"])
    print(f"provenance index: {index.size} observed values; {args.rounds} rounds")
    print(f"{'':24}{'median µs':>12}{'p99 µs':>10}{'x dict lookup':>16}")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        p99 = values[int(len(values) * 0.99) - 1]
        print(f"{name:24}{median:12.2f}{p99:10.2f}{median / base:16.1f}")


if __name__ == "__main__":
    main()

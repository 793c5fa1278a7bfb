"""What argument provenance adds to a whole authorize, on a task holding 1,000 observed values.

One runtime (SQLite, the packaged example policies plus a permit for ``web.browse``), one task
whose agent has observed tool results putting 1,000 distinct values in its context (as
``bench/provenance.py`` builds them, through the service and the store). Timed interleaved,
one call each per round:

  authorize, no sink        ``web.browse`` with its ``url``, the catalog declaring no sink
  authorize, url sink       the same call, ``url`` declared a ``trusted`` sink (the check
                            finds the chain's index in memory, current by the ``observed``
                            count of the task the decision read anyway: no read of its own)
  assess                    ``ProvenanceService.assess`` for that call (cache look-up + check)
  pure check                ``core.provenance_rules.assess`` on the in-memory index alone

and prints each median, the difference the sink makes, and the machine's load average before
and after (other work on the machine shows there first). The issue's budget is 20 µs added to
an authorize; quote the difference next to the no-sink median of the same run.
``bench/decision.py`` prints the same table after its own.

    .venv/bin/python bench/provenance_authorize.py [--iterations 2000] [--values 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.ids import TaskId
from tether.core.provenance_rules import assess
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.logs import configure_logging
from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import ManualClock

URL = "https://site7.example.com/page"
PERMIT = """
@id("bench-browse")
permit (principal, action == Action::"read", resource == Tool::"web.browse");
"""
SINK = """
tools:
  web.browse:
    sinks:
      url: {needs: trusted}
"""


def runtime_with(workdir: Path, name: str, sink: bool) -> Runtime:
    policies = workdir / f"policies-{name}"
    shutil.copytree(packaged_policies(), policies)
    (policies / "bench.cedar").write_text(PERMIT)
    if sink:
        catalog = policies / "catalog.yaml"
        catalog.write_text(catalog.read_text() + SINK)
    config = RuntimeConfig(data_dir=workdir / f"data-{name}", policy_dir=policies, environ={})
    return open_runtime(config, clock=ManualClock())


Timed = dict[str, Callable[[], object]]


def fill(runtime: Runtime, values: int) -> tuple[Workload, str, Call, Timed]:
    workload = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
    opened = runtime.tasks.open_task(
        workload,
        Intent("bench", "benchmark", "user:bench"),
        [Scope.of("web.browse", [ActionKind.READ], [])],
        ttl_seconds=3600,
        request=f"Open {URL} please",
    )
    provenance = runtime.provenance
    assert provenance is not None
    store = provenance._store
    task_ids = [TaskId(opened.task.task_id)]
    i = 0
    # A URL and its domain, an e-mail address, an account, a date and the text of each result:
    # one stored row per distinct value, until the task holds ``values``.
    while store.count_observations(task_ids) < values:
        text = (
            f"See https://site{i}.example.com/page for details, write to user{i}@example.org,"
            f" pay DE{i:020d} by {2000 + i // 336}-{1 + i % 12:02d}-{1 + i % 28:02d}."
        )
        provenance.observe(opened.task, f"tool{i % 7}", None, text)
        i += 1
    call = Call("web.browse", ActionKind.READ, None, {"url": URL})
    task = runtime.store.get_task(task_ids[0])  # as the decision reads it: its count current
    assert task is not None and task.observed == store.count_observations(task_ids)
    chain = (task,)
    rules = runtime.policy.provenance
    index = provenance._observed(chain, rules)
    sinks = rules.sinks_for("web.browse")
    key = provenance._key
    timed: Timed = {
        "assess": lambda: provenance.assess(chain, call),
        "pure check": lambda: assess(call.args, sinks, index, key),
    }
    return workload, opened.token, call, timed


def measure(fns: dict[str, Callable[[], object]], iterations: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(50):
            fn()
    clock = time.perf_counter_ns
    for _ in range(iterations):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append((clock() - start) / 1000.0)
    return samples


def run(iterations: int, values: int) -> None:
    """Measure and print the table (see the module docstring)."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        plain = runtime_with(Path(tmp), "plain", sink=False)
        sunk = runtime_with(Path(tmp), "sink", sink=True)
        try:
            w1, g1, c1, _ = fill(plain, values)
            w2, g2, c2, parts = fill(sunk, values)
            assert plain.authorizer.authorize(w1, g1, c1).decision.value == "allow"
            assert sunk.authorizer.authorize(w2, g2, c2).decision.value == "allow"
            samples = measure(
                {
                    "authorize, no sink": lambda: plain.authorizer.authorize(w1, g1, c1),
                    "authorize, url sink": lambda: sunk.authorizer.authorize(w2, g2, c2),
                    **parts,
                },
                iterations,
            )
        finally:
            plain.close()
            sunk.close()
    load_after = os.getloadavg()
    medians = {name: statistics.median(s) for name, s in samples.items()}
    print(f"argument provenance: {values} observed values, {iterations} interleaved rounds")
    print(
        f"  load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"on {os.cpu_count()} cores"
    )
    print("  µs, median")
    for name, value in medians.items():
        print(f"  {name:22} {value:10.1f}")
    added = medians["authorize, url sink"] - medians["authorize, no sink"]
    print(f"  added by the url sink  {added:10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--values", type=int, default=1000)
    args = parser.parse_args()
    configure_logging("warning", json=True)
    run(args.iterations, args.values)


if __name__ == "__main__":
    main()

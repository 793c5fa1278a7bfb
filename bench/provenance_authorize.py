"""What argument provenance adds to a whole authorize, on a task holding 1,000 observed values.

One runtime (SQLite, the packaged example policies plus a permit for ``web.browse`` and
``web.open``, the catalog declaring ``web.browse``'s ``url`` a ``trusted`` sink and nothing for
``web.open``), and one task granted both, whose agent has observed tool results putting 1,000
distinct values in its context (through the service and the store, each under the task's own
key). The same task makes both calls, with the same URL (one from the user's request), timed
interleaved, one call each per round:

  authorize, no sink        ``web.open`` with its ``url``: no sink, no check
  authorize, url sink       ``web.browse`` with the same ``url``: the check runs (it finds the
                            task's index in memory, current by the ``observed`` count of the
                            task the decision read anyway: no read of its own)
  assess                    ``ProvenanceService.assess`` for that call (cache look-up, key
                            derivation, check)
  pure check                ``core.provenance_rules.assess_chain`` on the in-memory index alone

then the two authorizes again, each in a warm loop of its own. It prints each median, the
difference the sink makes (and the ratio), and the machine's load average before and after
(other work on the machine shows there first). The issue's budget is 20 µs added to an
authorize; quote the difference next to the no-sink median of the same run.
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
from tether.core.provenance_rules import assess_chain
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.logs import configure_logging
from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import ManualClock
from tether.store.observations import SqlObservationStore

URL = "https://site7.example.com/page"
PERMIT = """
@id("bench-browse")
permit (principal, action == Action::"read", resource)
when { [Tool::"web.browse", Tool::"web.open"].contains(resource) };
"""
SINK = """
tools:
  web.browse:
    sinks:
      url: {needs: trusted}
"""


def open_bench_runtime(workdir: Path) -> Runtime:
    policies = workdir / "policies"
    shutil.copytree(packaged_policies(), policies)
    (policies / "bench.cedar").write_text(PERMIT)
    catalog = policies / "catalog.yaml"
    catalog.write_text(catalog.read_text() + SINK)
    config = RuntimeConfig(data_dir=workdir / "data", policy_dir=policies, environ={})
    return open_runtime(config, clock=ManualClock())


Timed = dict[str, Callable[[], object]]


def fill(runtime: Runtime, values: int) -> Timed:
    """One task holding ``values`` observed values, and the calls to time on it."""
    workload = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
    opened = runtime.tasks.open_task(
        workload,
        Intent("bench", "benchmark", "user:bench"),
        [Scope.of(tool, [ActionKind.READ], []) for tool in ("web.browse", "web.open")],
        ttl_seconds=3600,
        request=f"Open {URL} please",
    )
    provenance = runtime.provenance
    assert provenance is not None
    store = SqlObservationStore(runtime.store)
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
    task = runtime.store.get_task(task_ids[0])  # as the decision reads it: its count current
    assert task is not None and task.observed == store.count_observations(task_ids)
    chain = (task,)
    rules = runtime.policy.provenance
    sunk = Call("web.browse", ActionKind.READ, None, {"url": URL})
    plain = Call("web.open", ActionKind.READ, None, {"url": URL})
    sinks = rules.sinks_for("web.browse")
    assert sinks and not rules.sinks_for("web.open")
    parts = provenance.keyed(chain, rules)
    authorize = runtime.authorizer.authorize
    token = opened.token
    for call in (sunk, plain):
        verdict = authorize(workload, token, call)
        assert verdict.decision.value == "allow", verdict
    return {
        "authorize, no sink": lambda: authorize(workload, token, plain),
        "authorize, url sink": lambda: authorize(workload, token, sunk),
        "assess": lambda: provenance.assess(chain, sunk),
        "pure check": lambda: assess_chain(sunk.args, sinks, parts),
    }


Samples = dict[str, list[float]]


def measure(fns: Timed, iterations: int) -> tuple[Samples, Samples]:
    """Wall-clock and CPU time (this thread's) of each call, in µs, interleaved. CPU time is
    what other work on the machine cannot add to (it still pays for caches others evicted)."""
    wall: Samples = {name: [] for name in fns}
    used: Samples = {name: [] for name in fns}
    for fn in fns.values():
        for _ in range(50):
            fn()
    clock, cpu = time.perf_counter_ns, time.thread_time_ns
    for _ in range(iterations):
        for name, fn in fns.items():
            start, start_cpu = clock(), cpu()
            fn()
            used[name].append((cpu() - start_cpu) / 1000.0)
            wall[name].append((clock() - start) / 1000.0)
    return wall, used


def run(iterations: int, values: int) -> None:
    """Measure and print the table (see the module docstring)."""
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        runtime = open_bench_runtime(Path(tmp))
        try:
            timed = fill(runtime, values)
            wall, used = measure(timed, iterations)
            for name in ("authorize, no sink", "authorize, url sink"):
                alone_wall, alone_used = measure({name: timed[name]}, iterations)
                wall[f"{name} (alone)"] = alone_wall[name]
                used[f"{name} (alone)"] = alone_used[name]
        finally:
            runtime.close()
    load_after = os.getloadavg()
    medians = {name: statistics.median(s) for name, s in wall.items()}
    cpu = {name: statistics.median(s) for name, s in used.items()}
    print(f"argument provenance: {values} observed values, one task, {iterations} rounds")
    print(
        f"  load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after, "
        f"on {os.cpu_count()} cores"
    )
    print(f"  {'µs, median':30} {'wall':>8} {'CPU':>8}")
    for name, value in medians.items():
        print(f"  {name:30} {value:8.1f} {cpu[name]:8.1f}")
    for suffix, how in (("", "interleaved"), (" (alone)", "warm loops")):
        base, sunk = f"authorize, no sink{suffix}", f"authorize, url sink{suffix}"
        print(
            f"  added by the url sink, {how:7} {medians[sunk] - medians[base]:8.1f}"
            f" {cpu[sunk] - cpu[base]:8.1f}   (ratio {medians[sunk] / medians[base]:.3f} wall,"
            f" {cpu[sunk] / cpu[base]:.3f} CPU)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--values", type=int, default=1000)
    args = parser.parse_args()
    configure_logging("warning", json=True)
    run(args.iterations, args.values)


if __name__ == "__main__":
    main()

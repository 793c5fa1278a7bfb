"""In-process decision latency: tether's authorize against raw cedarpy, side by side, one run.

For 50 and 1,000 policies this prints p50/p99 of:

  raw cedarpy (text)      cedarpy.is_authorized over the full policy text (parsed every call)
  raw cedarpy (parsed)    the same over a pre-parsed full PolicySet handle (the fastest raw use)
  pure decide             core/decide.py's decide(facts, policy answer): the whole decision
                          given its facts and Cedar's answer (no Cedar, no store, no clock);
                          also timed alone, in a loop of its own (warm caches), as is
                          the whole authorize
  tether decide           the decision with indexed Cedar asked: policy engine + pure decide
  tether authorize        the whole service call: grant token verify, grant/task reads from
                          SQLite, scope, Cedar, and the audit write (no HTTP)
  authorize on the loop   the same through ``Authorizer.enforce_async``, as the HTTP hot path
                          runs it: decided on an event loop, which then leads the group
                          commit of its turn's writes itself (timed alone, one at a time)

and the ratios of tether to raw, measured in the same process, interleaved, so machine noise
hits both alike. Quote the ratios, not the absolute times.

Then what argument provenance adds to an authorize on a task holding 1,000 observed values
(``bench/provenance_authorize.py``: with and without a sink, interleaved, with the machine's
load average).

    .venv/bin/python bench/decision.py [--iterations 2000] [--policies 50,1000]
        [--provenance-values 1000]

Before and after a change, side by side: ``--baseline-src OLD/src`` runs the measurements in
child processes, alternately with tether imported from ``OLD/src`` and from this tree
(``--rounds`` of each, old first), leaving out raw cedarpy and provenance, and prints each
candidate's p50 and CPU p50 for old and new (the median over the rounds) and their ratio::

    .venv/bin/python bench/decision.py --baseline-src /path/to/old/src --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cedarpy
import provenance_authorize  # bench/, beside this script

from tether.core.call import Call
from tether.core.checks import scope_violation
from tether.core.decide import decide
from tether.core.facts import CallFacts, TokenStatus
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.logs import configure_logging
from tether.policy import CedarPolicyEngine
from tether.runtime import RuntimeConfig, dev_issuer, open_runtime, packaged_policies
from tether.service.clock import ManualClock
from tether.service.enforce import CallRequest
from tether.service.ports import PolicyRequest

TOOLS = 200
ACTIONS = ["read", "write", "delete", "send", "execute", "spend"]


def generate_policies(count: int) -> str:
    """``count`` policies over many tools and actions, shaped like a real deployment's."""
    out = []
    for i in range(count):
        tool = f"svc{i % TOOLS}.op"
        action = ACTIONS[i % len(ACTIONS)]
        if i % 10 == 9:
            out.append(
                f'@id("gen-{i}")\nforbid(principal, action == Action::"{action}", '
                f'resource == Tool::"{tool}") when {{ context.classification == "restricted" }};'
            )
        else:
            out.append(
                f'@id("gen-{i}")\npermit(principal, action == Action::"{action}", '
                f'resource == Tool::"{tool}") when {{ context.intent.workflow == "wf{i % 7}" '
                f"|| (context.args has limit && context.args.limit <= {i}) }};"
            )
    return "\n\n".join(out) + "\n"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: The process's CPU time per call (every thread: the group-commit writer's too), by
#: candidate, next to the wall-clock samples: on a machine other jobs keep busy, wall time
#: is mostly waiting for a core, CPU time is the call's own cost.
CPU: dict[str, list[float]] = {}


def measure(fns: dict[str, Callable[[], object]], iterations: int) -> dict[str, list[float]]:
    """Run the candidates interleaved, one call each per round, so noise is shared."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm up
        for _ in range(50):
            fn()
    clock = time.perf_counter_ns
    cpu_clock = time.process_time_ns
    for _ in range(iterations):
        for name, fn in fns.items():
            start, cpu_start = clock(), cpu_clock()
            fn()
            cpu_end, end = cpu_clock(), clock()
            samples[name].append((end - start) / 1000.0)
            cpu[name].append((cpu_end - cpu_start) / 1000.0)
    CPU.update(cpu)
    return samples


def run(count: int, iterations: int, workdir: Path, *, raw: bool = True) -> dict[str, Any]:
    """Measure at ``count`` policies, print the table; the p50s (wall and CPU) by candidate.

    ``raw=False`` leaves raw cedarpy out (the side-by-side runs compare tether with itself)."""
    policy_dir = workdir / f"policies-{count}"
    shutil.copytree(packaged_policies(), policy_dir)
    for cedar in policy_dir.glob("*.cedar"):
        cedar.unlink()
    shutil.rmtree(policy_dir / "tests", ignore_errors=True)
    (policy_dir / "generated.cedar").write_text(generate_policies(count))

    engine = CedarPolicyEngine.load(policy_dir)
    agent = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
    intent = Intent("wf6", "benchmark", "user:bench")
    tool = "svc6.op"
    call = Call(tool, ActionKind.READ, "crm", {"limit": 500})
    request = PolicyRequest(agent, call, engine.classification("crm"), intent, "tsk_bench")  # type: ignore[arg-type]

    full_text = generate_policies(count)
    full_set = cedarpy.PolicySet.from_str(full_text)
    raw_request = {
        "principal": f'Agent::"{agent.id}"',
        "action": 'Action::"read"',
        "resource": f'Tool::"{tool}"',
        "context": {
            "intent": {"workflow": "wf6", "purpose": "benchmark", "on_behalf_of": "user:bench"},
            "task_id": "tsk_bench",
            "agent": {"id": agent.id, "trust_domain": "tether.local", "name": "analyst"},
            "dataset": "crm",
            "classification": "confidential",
            "args": {"limit": 500},
        },
    }

    clock = ManualClock()
    runtime = open_runtime(
        RuntimeConfig(data_dir=workdir / f"data-{count}", policy_dir=policy_dir, environ={}),
        clock=clock,
    )
    workload = Workload.from_spiffe_id(agent.id)
    opened = runtime.tasks.open_task(
        workload, intent, [Scope.of(tool, [ActionKind.READ], ["crm"])], ttl_seconds=3600
    )
    grant = opened.grant
    assert dev_issuer(runtime.config)  # the embedded default's issuer exists

    facts = CallFacts(
        agent.id,
        call,
        clock.now(),
        TokenStatus.VALID,
        token_agent=agent.id,
        grant=grant,
        chain=(opened.task,),
        classification=engine.classification("crm"),
    )
    answer = engine.decide(request)

    def pure_decide() -> object:
        return decide(facts, answer)

    def tether_decide() -> object:
        return decide(facts, engine.decide(request))

    def tether_authorize() -> object:
        return runtime.authorizer.authorize(workload, opened.token, call)

    loop = asyncio.new_event_loop()
    on_loop = CallRequest(call.tool, call.action, call.dataset, dict(call.args))

    def authorize_on_loop() -> object:
        return loop.run_until_complete(
            runtime.authorizer.enforce_async(workload, opened.token, on_loop)
        )

    expected = cedarpy.is_authorized(raw_request, full_set, []).allowed
    got = tether_decide()
    assert expected == (got.decision.value == "allow"), "tether and raw cedarpy disagree"  # type: ignore[attr-defined]
    assert scope_violation(grant, call) is None

    raw_candidates: dict[str, Callable[[], object]] = {
        "raw cedarpy (text)": lambda: cedarpy.is_authorized(raw_request, full_text, []),
        "raw cedarpy (parsed)": lambda: cedarpy.is_authorized(raw_request, full_set, []),
    }
    samples = measure(
        {
            **(raw_candidates if raw else {}),
            "pure decide": pure_decide,
            "tether decide": tether_decide,
            "tether authorize": tether_authorize,
        },
        iterations,
    )
    # The pure decision and the whole authorize also in loops of their own: interleaved with a
    # 1,000-policy cedarpy call each starts every round with cold caches, which is the
    # neighbours' cost, not its own.
    samples.update(measure({"pure decide (alone)": pure_decide}, iterations))
    samples.update(measure({"tether authorize (alone)": tether_authorize}, iterations))
    samples.update(measure({"authorize on the loop": authorize_on_loop}, iterations))
    runtime.close()
    loop.close()

    medians = {name: statistics.median(s) for name, s in samples.items()}
    print(f"\n{count} policies, {iterations} interleaved rounds (µs)")
    print(f"  {'':24} {'p50':>10} {'p99':>10} {'CPU p50':>10} {'CPU mean':>10}")
    for name, s in samples.items():
        used = CPU[name]
        print(
            f"  {name:24} {medians[name]:10.1f} {percentile(s, 0.99):10.1f} "
            f"{statistics.median(used):10.1f} {statistics.fmean(used):10.1f}"
        )
    for baseline in ("raw cedarpy (text)", "raw cedarpy (parsed)") if raw else ():
        for candidate in ("tether decide", "tether authorize"):
            ratio = medians[candidate] / medians[baseline]
            print(f"  ratio {candidate} / {baseline}: {ratio:.2f}x")
    return {name: {"p50": medians[name], "cpu": statistics.median(CPU[name])} for name in samples}


def side_by_side(options: argparse.Namespace) -> None:
    """``--baseline-src``: old and new in alternate child processes, then the table."""
    here = Path(__file__).resolve()
    trees = {"old": Path(options.baseline_src).resolve(), "new": here.parents[1] / "src"}
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    for round_ in range(options.rounds):
        for which, src in trees.items():
            load = os.getloadavg()[0]
            child = subprocess.run(
                [
                    sys.executable,
                    str(here),
                    "--child",
                    "--iterations",
                    str(options.iterations),
                    "--policies",
                    options.policies,
                ],
                env={**os.environ, "PYTHONPATH": str(src)},
                capture_output=True,
                text=True,
                check=True,
            )
            runs[which].append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {which}: done (load average before {load:.2f})")
    print(f"\nold: {trees['old']}\nnew: {trees['new']}")
    print(f"median over {options.rounds} alternate runs of each, µs; ratio new / old")
    for count in runs["new"][0]:
        print(f"\n{count} policies")
        print(f"  {'':26} {'old p50':>9} {'new p50':>9} {'ratio':>6} {'old CPU':>9} {'new CPU':>9}")
        for name in runs["new"][0][count]:
            row = [
                statistics.median(r[count][name][key] for r in runs[which])
                for key in ("p50", "cpu")
                for which in ("old", "new")
            ]
            old_p50, new_p50, old_cpu, new_cpu = row
            print(
                f"  {name:26} {old_p50:9.1f} {new_p50:9.1f} {new_p50 / old_p50:6.2f} "
                f"{old_cpu:9.1f} {new_cpu:9.1f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument(
        "--policies",
        default="50,1000",
        help="policy counts to run, comma-separated (default 50,1000)",
    )
    parser.add_argument("--provenance-values", type=int, default=1000)
    parser.add_argument(
        "--baseline-src",
        help="another tether source tree (its src/ directory): old and new side by side",
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --baseline-src: runs of each")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_src:
        side_by_side(args)
        return
    # Decisions log one line each; written to this terminal it would be timed too.
    configure_logging("warning", json=True)
    if args.child:  # one side of --baseline-src: the p50s as the last line, as JSON
        with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
            found = {
                count: run(int(count), args.iterations, Path(tmp), raw=False)
                for count in args.policies.split(",")
            }
        print(json.dumps(found))
        return
    print(f"cedarpy {getattr(cedarpy, '__version__', '?')}, pid {os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        for count in [int(n) for n in args.policies.split(",")]:
            run(count, args.iterations, Path(tmp))
    print()
    provenance_authorize.run(args.iterations, args.provenance_values)


if __name__ == "__main__":
    main()

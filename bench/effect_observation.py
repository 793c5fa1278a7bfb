"""Serve's ``POST /v1/effects`` handler alone, with the call's observation and without: what a
remote-decision MCP gateway (``tether mcp-gateway --pdp-url``) costs serve per call besides its
authorize.

Each run opens a runtime as ``tether serve`` does (the example policies and one permit for
``bench.echo``; embedded SQLite in a fresh data directory, or the PostgreSQL database of
``--postgres``), decides an allowed ``bench.echo`` read, then reports its effect through the
hot path's handler (:func:`tether.api.hotpath._record_effect`, what the worker thread runs
for the request once its body is validated): alternately with the result of the call as its
observation (what the gateway sends) and without. Only that handler is timed, by the CPU clock
of the thread it runs on and by the wall clock; HTTP, the SVID and the validation are the same
for both trees and left out.

With ``--baseline-src`` (``git archive main src | tar -x -C /tmp/main``), the same runs are
made on that tree too, alternating with this tree's, in processes of their own; each tree's
quietest run (least CPU per call) is printed side by side with the ratio. Quote figures from one
run, with the load average it prints.

    .venv/bin/python bench/effect_observation.py [--calls 2000] [--runs 3]
        [--baseline-src DIR] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from shutil import copytree

BENCH = Path(__file__).resolve().parent
WARMUP = 200
KINDS = ("with observation", "effect alone")


def measure(calls: int, store_url: str | None) -> dict[str, list[float]]:
    """Per call of each kind: CPU µs of the handler's thread, then wall µs."""
    from tether.api.hotpath import _record_effect
    from tether.api.models import EffectIn
    from tether.core.scope import ActionKind, Scope
    from tether.core.task import Intent
    from tether.logs import configure_logging
    from tether.runtime import RuntimeConfig, dev_issuer, open_runtime, packaged_policies
    from tether.service.enforce import CallRequest

    configure_logging("warning", json=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policies = root / "policies"
        copytree(packaged_policies(), policies)
        (policies / "bench.cedar").write_text(
            '@id("bench")\npermit (principal, action == Action::"read", '
            'resource == Tool::"bench.echo");\n'
        )
        environ = {k: v for k, v in os.environ.items() if k != "TETHER_ENV"}
        config = RuntimeConfig(
            data_dir=root / "data", policy_dir=policies, environ=environ, store_url=store_url
        )
        runtime = open_runtime(config)
        try:
            svid = dev_issuer(config).mint_svid("bench", audience="tether", now=runtime.clock.now())
            agent = runtime.verifier.verify(svid, runtime.clock.now())
            scopes = [Scope.from_json({"tool": "bench.echo", "actions": ["read"]})]
            intent = Intent("bench", "measure the effect write", "user:bench")
            grant = runtime.tasks.open_task(agent, intent, scopes, 3600).token
            deps = runtime.api_deps
            request = CallRequest("bench.echo", ActionKind.READ, None, {"text": "call"}, None)
            spent: dict[str, list[float]] = {f"{k} {c}": [] for k in KINDS for c in ("cpu", "wall")}
            for i in range(WARMUP + calls):
                for kind in KINDS:
                    decision = runtime.authorizer.enforce(agent, grant, request).decision_id
                    result = {"content": [{"type": "text", "text": f"call {i}"}], "isError": False}
                    observation = {"grant": grant, "tool": "bench.echo", "result": result}
                    body = EffectIn.model_validate(
                        {
                            "decision_id": decision,
                            "bytes": 40,
                            **({"observation": observation} if kind == KINDS[0] else {}),
                        }
                    )
                    cpu, wall = time.thread_time(), time.perf_counter()
                    effect, recorded = _record_effect(deps, agent, body)
                    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
                    if effect.decision_id != decision or (recorded is None) != (kind != KINDS[0]):
                        raise SystemExit(f"{kind}: the effect was not recorded as asked")
                    if i >= WARMUP:
                        spent[f"{kind} cpu"].append(cpu * 1e6)
                        spent[f"{kind} wall"].append(wall * 1e6)
            return spent
        finally:
            runtime.close()


def run(src: Path | None, calls: int, store_url: str | None) -> dict[str, float]:
    """One run in a process of its own on ``src`` (this tree's when ``None``): medians."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src.resolve()), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--child", str(calls)]
    if store_url is not None:
        command += ["--store-url", store_url]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    spent: dict[str, list[float]] = json.loads(out.splitlines()[-1])
    return {name: statistics.median(values) for name, values in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3, help="runs per tree, alternating")
    parser.add_argument("--baseline-src", type=Path, help="another tree's src, measured beside")
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL store")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--store-url", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(measure(options.child, options.store_url)))
        return
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if options.baseline_src is not None:
        trees.append(("baseline", options.baseline_src))
    with ExitStack() as stack:
        url = None
        if options.postgres:
            sys.path.insert(0, str(BENCH))
            from _servers import throwaway_postgres

            url = stack.enter_context(throwaway_postgres())
        loads = [os.getloadavg()[0]]
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _ in trees}
        for _ in range(options.runs):
            for label, src in trees:
                runs[label].append(run(src, options.calls, url))
                loads.append(os.getloadavg()[0])
    quietest = {
        label: min(found, key=lambda r: r[f"{KINDS[0]} cpu"]) for label, found in runs.items()
    }
    store = "PostgreSQL" if options.postgres else "SQLite"
    print(
        f"serve's effect handler, {options.calls} calls per kind per run, {options.runs} runs "
        f"per tree, {store}; load average {min(loads):.2f} to {max(loads):.2f}; medians of "
        "each tree's quietest run, µs"
    )
    header = f"{'':28}" + "".join(f"{label:>14}" for label, _ in trees)
    print(header + ("       ratio" if len(trees) > 1 else ""))
    for kind in KINDS:
        for clock in ("cpu", "wall"):
            name = f"{kind} {clock}"
            row = [quietest[label][name] for label, _ in trees]
            ratio = f"{row[0] / row[1]:11.2f}x" if len(row) > 1 else ""
            print(f"{name:28}" + "".join(f"{v:14.0f}" for v in row) + ratio)


if __name__ == "__main__":
    main()

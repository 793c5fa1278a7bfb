"""Where an HTTP authorize's server CPU goes under load: cProfile, per thread, in-process.

    .venv/bin/python bench/profile_authorize.py [--seconds 5] [--concurrency 16] [--top 40]

Builds the app ``tether serve`` builds (embedded SQLite in a fresh data directory, logs at warning
and queued) and serves it with uvicorn in this process; the load is ``bench/_loadgen.py`` in a
second process with ``bench/throughput.py``'s requests (one task per connection, the allowed
``crm.query`` read). While the load runs, two profilers measure thread CPU time
(``time.thread_time``, so a thread waiting for the GIL or the disk is not charged): one on the
event loop's thread (HTTP, the hot path, the decision) and one on the store's group-commit
writer thread (the durable write). It prints the process's CPU per answered request, then each
thread's functions by cumulative and by own time.

cProfile's own overhead inflates every figure, most for small functions: read the shares, not
the absolute times, and compare them with ``bench/throughput.py``'s server CPU per request.
(py-spy, which samples without that overhead, is neither in the lock file nor on the system.)

    .venv/bin/python bench/profile_authorize.py --steps 3000

``--steps N`` measures without a profiler and without HTTP: the in-process authorize of
``bench/decision.py`` (the example policies, the allowed ``crm.query`` read), N times through
``Authorizer.authorize`` (the caller's thread leads the commit) and N times through
``enforce_async`` on an event loop (the write awaited from the writer thread), in rounds of 200; it
prints the quietest round (least process CPU: on a shared machine, the round other work disturbed
least). Only the named steps are timed, each by the CPU clock of the thread it runs on, so the
figures are per decision and near what the steps cost unobserved (each timer adds about a
microsecond: two reads of the thread's CPU clock, ~0.4 µs each here). Steps nest: read each as the
whole of what it calls. A step the imported tree lacks is left out, so the same script measures an
older tree's code too: ``OLD/.venv/bin/python bench/profile_authorize.py --steps N``.

    .venv/bin/python bench/profile_authorize.py --postgres [--steps N]

``--postgres`` measures the same on PostgreSQL instead of SQLite: a throw-away durable cluster
(``bench/_servers.py``, as ``bench/throughput.py``'s B), or the empty database of
``--store-url``. There the event loop hands each authorize to a worker thread, where it reads and
leads its group commit: the profile then covers those threads too (each worker thread's profiler
is merged into one report).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import uvicorn
from _servers import free_port, throwaway_postgres
from throughput import agent_requests

from tether.cli.serve import build_app
from tether.logs import configure_logging
from tether.runtime import RuntimeConfig, open_runtime
from tether.service.authorize import Authorizer
from tether.store.groupcommit import GroupCommit

BENCH = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--steps", type=int, default=0, help="time named steps in-process")
    parser.add_argument("--postgres", action="store_true", help="a throw-away PostgreSQL store")
    parser.add_argument("--store-url", help="an empty PostgreSQL database instead")
    options = parser.parse_args()
    with ExitStack() as stack:
        url: str | None = None
        if options.store_url or options.postgres:
            url = options.store_url or stack.enter_context(throwaway_postgres())
        if options.steps:
            configure_logging("warning", json=True)
            steps(options.steps, url)
            return
        profile(options, url)


def profile(options: argparse.Namespace, store_url: str | None) -> None:
    """cProfile of the event loop's, the writer's and the worker threads' CPU under load."""
    configure_logging("warning", json=True, capture_stdlib=True, queued=True)

    loop_profile = cProfile.Profile(time.thread_time)
    writer_profile = cProfile.Profile(time.thread_time)
    writing = GroupCommit._write_forever

    def profiled_writer(self: GroupCommit[Any, Any]) -> None:
        writer_profile.enable()
        try:
            writing(self)
        finally:
            writer_profile.disable()

    GroupCommit._write_forever = profiled_writer  # type: ignore[method-assign]

    # Worker threads (PostgreSQL: each authorize runs on one): a profiler per thread, enabled
    # around each authorize while the load runs, merged at the end.
    workers: dict[int, cProfile.Profile] = {}
    measuring = threading.Event()
    authorize = Authorizer.authorize

    def profiled_authorize(self: Authorizer, *args: Any, **kwargs: Any) -> Any:
        if not measuring.is_set() or threading.current_thread() is threading.main_thread():
            return authorize(self, *args, **kwargs)
        mine = workers.setdefault(threading.get_ident(), cProfile.Profile(time.thread_time))
        mine.enable()
        try:
            return authorize(self, *args, **kwargs)
        finally:
            mine.disable()

    Authorizer.authorize = profiled_authorize  # type: ignore[method-assign]

    with tempfile.TemporaryDirectory(prefix="tether-profile-") as tmp:
        data = Path(tmp) / "data"
        runtime = open_runtime(RuntimeConfig(data_dir=data, environ={}, store_url=store_url))
        app = build_app(runtime)
        loops: list[asyncio.AbstractEventLoop] = []

        async def note_loop() -> None:
            loops.append(asyncio.get_running_loop())

        app.router.on_startup.append(note_loop)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        outcome: dict[str, Any] = {}

        def drive() -> None:
            try:
                while not server.started:
                    time.sleep(0.05)  # a real socket binding, not tether's clock
                requests = agent_requests(data, [port], options.concurrency)
                spec = {
                    "connections": [
                        {"host": "127.0.0.1", "port": p, "request": r} for p, r in requests
                    ],
                    "seconds": options.seconds,
                    "requests": None,
                    "answer_key": "decision",
                    "timeout": options.seconds + 300,
                }
                load = subprocess.Popen(
                    [sys.executable, str(BENCH / "_loadgen.py")],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert load.stdin is not None and load.stdout is not None
                loops[0].call_soon_threadsafe(loop_profile.enable)
                measuring.set()
                before = os.times()
                load.stdin.write(json.dumps(spec) + "\n")
                load.stdin.flush()
                line = load.stdout.readline()
                after = os.times()
                measuring.clear()
                stopped = threading.Event()
                loops[0].call_soon_threadsafe(lambda: (loop_profile.disable(), stopped.set()))
                stopped.wait(10)
                load.stdin.close()
                load.wait(30)
                outcome.update(json.loads(line))
                outcome["cpu"] = (after.user - before.user) + (after.system - before.system)
            finally:
                server.should_exit = True

        threading.Thread(target=drive, daemon=True).start()
        server.run()
        runtime.close()

    answered = int(outcome.get("answered", 0))
    elapsed = float(outcome.get("elapsed", 0.0)) or 1.0
    print(
        f"{answered} answered in {elapsed:.1f} s ({answered / elapsed:.0f}/s), "
        f"answers {outcome.get('answers')}, statuses {outcome.get('statuses')}; "
        f"process CPU per request {1000 * outcome.get('cpu', 0.0) / max(answered, 1):.2f} ms "
        "(profiled)"
    )
    threads: list[tuple[str, list[cProfile.Profile]]] = [
        ("EVENT LOOP THREAD", [loop_profile]),
        ("WRITER THREAD", [writer_profile]),
    ]
    if workers:
        threads.append((f"WORKER THREADS ({len(workers)}, merged)", list(workers.values())))
    for name, profiles in threads:
        print(f"\n===== {name} =====")
        try:
            stats = pstats.Stats(*profiles)  # type: ignore[arg-type]
        except TypeError:  # a profiler that never ran
            print("(nothing ran here)")
            continue
        stats.sort_stats("cumulative").print_stats(options.top)
        stats.sort_stats("tottime").print_stats(options.top // 2)


#: (module, attribute path, label): the steps ``--steps`` times, in the order printed.
STEPS = [
    ("tether.service.authorize", "Authorizer.authorize", "authorize (whole, caller's thread)"),
    ("tether.service.authorize", "checked_call", "  input check (core/callcheck)"),
    ("tether.service.authorize", "Authorizer._facts", "  facts"),
    ("tether.identity.grant_tokens", "GrantTokenSigner.verify", "    grant token verify"),
    ("tether.store.sql", "SqlStore.get_grant_with_task", "    grant + task read"),
    ("tether.store.hotread", "_fetch", "      PostgreSQL: pooled driver connection, one statement"),
    ("tether.service.flows", "Flows.chain", "    delegation chain"),
    ("tether.service.provenance", "ProvenanceService.assess", "    argument provenance"),
    ("tether.service.authorize", "Authorizer._decide", "  decide"),
    ("tether.service.authorize", "Authorizer._ask_policy", "    Cedar (policy engine)"),
    ("tether.policy.engine", "CedarPolicyEngine.decide", "      engine.decide"),
    ("tether.policy.engine", "build_context", "        context record"),
    ("cedarpy", "is_authorized", "        cedarpy.is_authorized (public)"),
    ("tether.policy.answer", "Cedar.ask", "        ask Cedar"),
    ("cedarpy._internal", "is_authorized_batch", "          Rust call"),
    ("cedarpy._internal", "is_authorized", "          Rust call"),
    ("tether.policy.engine", "_fold_answer", "        read the answer (memo, or fold)"),
    ("tether.policy.engine", "fold", "        fold the answer"),
    ("tether.service.authorize", "decide", "    pure decision (core/decide)"),
    ("tether.service.flows", "Flows.anomaly", "    anomaly signal"),
    ("tether.core.ids", "IdFactory.decision", "  decision id"),
    ("tether.service.authorize", "Authorizer._verdict", "  verdict"),
    ("tether.service.flows", "Flows.charge", "  budget charge"),
    ("tether.core.verdict", "Verdict.to_json", "  verdict JSON (audit body)"),
    ("tether.service.recording", "Recorder.call", "  audit body: the call (arg MACs)"),
    ("tether.service.recording", "Recorder.entry", "  audit entry (+ record id)"),
    ("tether.store.groupcommit", "GroupCommit.submit", "  group commit (caller leads)"),
    ("tether.store.decision_log", "DecisionLogSql._run_batch", "    batch transaction"),
    ("tether.store.decision_log", "DecisionLogSql._apply", "      one write"),
    ("tether.store.db", "Writer.append", "        audit append"),
    ("tether.store.db", "seal", "          seal (JCS + SHA-256)"),
    ("tether.store.codec", "audit_params", "          audit row params"),
    ("tether.store.driver", "DriverStatement.run", "        driver statements"),
    ("tether.store.pgbatch", "PostgresBatch._write", "      PostgreSQL plain batch (two messages)"),
    ("tether.store.pgbatch", "seal_with_leaf", "        seal the audit record (JCS + SHA-256)"),
    ("tether.store.pgbatch", "_client", "        values bound as literals (psycopg)"),
]


ROUND = 200


def steps(iterations: int, store_url: str | None) -> None:
    """``--steps``: CPU per decision of each named step, sync and on an event loop."""
    import importlib
    from collections import Counter

    from tether.core.call import Call
    from tether.core.identity import Workload
    from tether.core.scope import ActionKind, Scope
    from tether.core.task import Intent
    from tether.service.clock import ManualClock
    from tether.service.enforce import CallRequest

    spent: Counter[str] = Counter()
    cpu = time.thread_time_ns
    timed = []
    for module_name, path, label in STEPS:
        try:
            owner: Any = importlib.import_module(module_name)
        except ModuleNotFoundError:  # an older tree's
            continue
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent, None)
        original = getattr(owner, name, None) if owner is not None else None
        if original is None:
            continue

        def timer(*args: Any, __f: Any = original, __label: str = label, **kwargs: Any) -> Any:
            start = cpu()
            try:
                return __f(*args, **kwargs)
            finally:
                spent[__label] += cpu() - start

        setattr(owner, name, timer)
        if label not in timed:  # one label may name a step's older and newer function
            timed.append(label)

    with tempfile.TemporaryDirectory(prefix="tether-steps-") as tmp:
        runtime = open_runtime(
            RuntimeConfig(data_dir=Path(tmp), environ={}, store_url=store_url), clock=ManualClock()
        )
        agent = Workload.from_spiffe_id("spiffe://tether.local/agent/analyst")
        opened = runtime.tasks.open_task(
            agent,
            Intent("support", "bench", "user:bench"),
            [Scope.of("crm.query", [ActionKind.READ], ["crm"])],
            ttl_seconds=3600,
        )
        call = Call("crm.query", ActionKind.READ, "crm", {"limit": 50})
        request = CallRequest(call.tool, call.action, call.dataset, dict(call.args))
        loop = asyncio.new_event_loop()

        def sync() -> None:
            runtime.authorizer.authorize(agent, opened.token, call)

        def on_loop() -> None:
            loop.run_until_complete(runtime.authorizer.enforce_async(agent, opened.token, request))

        print(f"{iterations} decisions each; µs of thread CPU per decision")
        for title, run in (("authorize", sync), ("enforce_async on an event loop", on_loop)):
            for _ in range(200):
                run()
            # Rounds of ROUND decisions; the quietest round (least process CPU) is printed: on
            # a shared machine it is the one other work disturbed least, and its steps add up.
            rounds: list[tuple[float, dict[str, float]]] = []
            for _ in range(max(1, iterations // ROUND)):
                spent.clear()
                before = time.process_time_ns()
                for _ in range(ROUND):
                    run()
                process = (time.process_time_ns() - before) / 1000 / ROUND
                rounds.append((process, {k: v / 1000 / ROUND for k, v in spent.items()}))
            quietest = min(rounds, key=lambda r: r[0])
            median = statistics.median(r[0] for r in rounds)
            print(
                f"\n{title}: process CPU per decision {quietest[0]:.0f} µs in the quietest of "
                f"{len(rounds)} rounds of {ROUND} (median round {median:.0f} µs)"
            )
            for label in timed:
                if label in quietest[1]:
                    print(f"  {quietest[1][label]:7.1f}  {label}")
        loop.close()
        runtime.close()


if __name__ == "__main__":
    main()

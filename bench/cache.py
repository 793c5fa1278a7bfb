"""In-process authorize latency on PostgreSQL, with the grant cache (Redis fan-out) and without.

Two runtimes share one PostgreSQL database and one data directory, as two replicas would: one
with ``redis_url`` (grant and task reads answered from the cache, checked against Redis's
invalidation counter on every read), one without (PostgreSQL-only mode: every authorize reads
the grant and the task from the database). The same agent and grant call both, alternately, one
call each per round, so the machine's noise falls on both alike. Every call does the whole job
but HTTP: grant token verification, the grant and task reads, scope and Cedar, and the decision's
audit record committed before the answer.

Prints the ratio of the medians (cached / uncached) and the cache's hits, as a check that it was
used. Quote the ratio, not absolute times.

    .venv/bin/python bench/cache.py [--rounds 2000] [--fast-commit]
                                    [--store-url postgresql://...] [--redis-url redis://...]

Without URLs it starts a throw-away PostgreSQL cluster (``bench/_servers.py``: the tests' helper,
restarted with ``fsync`` and ``synchronous_commit`` on, so the audit commit is as durable as in
production) and a throw-away ``redis-server`` (``tests/redis_server.py``) on loopback.
``--fast-commit`` keeps the tests' ``fsync=off`` instead: the commit then costs no disk flush, and
the ratio shows what the two database reads cost against the rest of the call.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from _servers import BENCH, postgres_settings, throwaway_postgres

from tether.core.call import Call
from tether.core.identity import Workload
from tether.core.scope import ActionKind, Scope
from tether.core.task import Intent
from tether.logs import configure_logging
from tether.runtime import Runtime, RuntimeConfig, open_runtime, packaged_policies
from tether.service.clock import SystemClock

AGENT = "spiffe://tether.local/agent/analyst"
INTENT = Intent("support-triage", "measure", "user:bench")
CALL = Call("crm.query", ActionKind.READ, "crm", {})


@contextmanager
def fast_postgres() -> Iterator[str]:
    """The tests' throw-away cluster as it is (``fsync`` and ``synchronous_commit`` off)."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from pg_server import running_postgres

    with running_postgres() as server:
        with psycopg.connect(server.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        yield server.url("bench")


@contextmanager
def throwaway_redis() -> Iterator[str]:
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from redis_server import running_redis

    with running_redis() as server:
        yield server.url()


def measure(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Run the candidates interleaved, one call each per round, so noise is shared."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(100):  # warm up: connections, caches, the task's label settles
        for fn in fns.values():
            fn()
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append((clock() - start) / 1000.0)
    return samples


def wait_until_usable(runtime: Runtime) -> None:
    cache = runtime.cache
    assert cache is not None
    deadline = time.monotonic() + 15
    while not cache.usable():
        if time.monotonic() > deadline:
            raise SystemExit("the grant cache never came in step with Redis")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--store-url", default=None)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument(
        "--fast-commit",
        action="store_true",
        help="a throw-away PostgreSQL with fsync off (the tests' settings): the reads' share "
        "of the call without the disk's commit latency",
    )
    args = parser.parse_args()
    configure_logging("warning", json=False)  # not a log line per decision
    with ExitStack() as stack:
        store_url = args.store_url or stack.enter_context(
            fast_postgres() if args.fast_commit else throwaway_postgres()
        )
        redis_url = args.redis_url or stack.enter_context(throwaway_redis())
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tether-bench-")))
        clock = SystemClock()

        def runtime(redis: str | None) -> Runtime:
            config = RuntimeConfig(
                data_dir=data_dir,
                policy_dir=packaged_policies(),
                environ={},
                store_url=store_url,
                redis_url=redis,
            )
            opened = open_runtime(config, clock=clock)
            stack.callback(opened.close)
            return opened

        plain, cached = runtime(None), runtime(redis_url)
        wait_until_usable(cached)
        agent = Workload.from_spiffe_id(AGENT)
        token = plain.tasks.open_task(
            agent, INTENT, [Scope.of("crm.query", [ActionKind.READ], ["crm"])], ttl_seconds=3600
        ).token

        def authorize(on: Runtime) -> Callable[[], object]:
            def call() -> object:
                verdict = on.authorizer.authorize(agent, token, CALL)
                if verdict.decision.value != "allow":
                    raise SystemExit(f"expected allow, got {verdict}")
                return verdict

            return call

        assert cached.cache is not None
        before = cached.cache.stats
        samples = measure({"uncached": authorize(plain), "cached": authorize(cached)}, args.rounds)
        after = cached.cache.stats
        print(f"pid {os.getpid()}, {os.cpu_count()} CPUs; {postgres_settings(store_url)}")
        ratio = statistics.median(samples["cached"]) / statistics.median(samples["uncached"])
        reads = (after.hits + after.misses + after.bypasses) - (
            before.hits + before.misses + before.bypasses
        )
        print(f"{args.rounds} interleaved rounds; cache hits {after.hits - before.hits} of {reads}")
        print(f"median authorize latency, cached / uncached: {ratio:.2f}x")


if __name__ == "__main__":
    main()

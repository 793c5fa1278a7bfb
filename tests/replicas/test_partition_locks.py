"""Replicas with audit partitions of their own never wait on each other's chain head, as
PostgreSQL's own lock table shows (not timing): while one replica's head is held, a writer of
that partition is blocked by the holder, and the other replica commits decisions all the same."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import psycopg

from replicas.harness import CRM, READ, Agents, open_task, running_replicas
from replicas.test_stalled_head import HOLDING, HeadHolder
from tether.service.clock import ManualClock

#: A writer of the held partition waits for its head far longer than this test takes.
LONG_LOCK_WAIT = "?options=" + quote("-c lock_timeout=120000")


def _blocked_by(dsn: str, holder_pid: int) -> list[int]:
    """The sessions PostgreSQL reports as waiting on a lock ``holder_pid`` holds."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
            (holder_pid,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_two_replicas_never_wait_on_one_head(
    tmp_path: Path, store_url: str, clock: ManualClock
) -> None:
    pg_dsn = store_url.replace("postgresql+psycopg://", "postgresql://", 1)
    url = store_url + LONG_LOCK_WAIT
    with running_replicas(tmp_path / "data", url, clock, 2) as (a, b):
        analyst = Agents([a, b], "analyst", clock)
        try:
            task = open_task(analyst.on[1], [CRM])
            before = b.runtime.store.chain_heads()
            with ExitStack() as stack:
                holder = HeadHolder(store_url, stack, partition="a", busy=HOLDING)
                holder_pid = int(
                    holder.tx.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                )
                answers: list[dict[str, object]] = []
                on_a = threading.Thread(
                    target=lambda: answers.append(
                        analyst.on[0].authorize(task["grant"], **READ).json()
                    )
                )
                on_a.start()
                # Replica a's decision is queued behind the holder of a's head ...
                deadline = time.monotonic() + 60
                while not _blocked_by(pg_dsn, holder_pid):
                    assert on_a.is_alive() and time.monotonic() < deadline, answers
                    time.sleep(0.02)
                # ... while replica b decides and commits: it never takes a's head.
                for _ in range(3):
                    verdict = analyst.on[1].authorize(task["grant"], **READ).json()
                    assert verdict["decision"] == "allow", verdict
                assert on_a.is_alive() and _blocked_by(pg_dsn, holder_pid)
                after = b.runtime.store.chain_heads()
                head_b, was_b = after["b"], before["b"]
                assert head_b is not None and was_b is not None and head_b.seq == was_b.seq + 3
                holder.release()
            on_a.join(60)
            assert answers and answers[0]["decision"] == "allow", answers
        finally:
            analyst.close()

"""A replica stalled while it holds its audit partition's head (its process frozen
mid-transaction) does not stop the cluster.

Replicas with partitions of their own never wait on it: their decisions and the kill switch
answer at once. Replicas configured to *share* its partition (the same replica id) answer
``audit_unavailable`` after their bounded lock wait instead of hanging, and the kill switch on
one of them waits past the stall (the server ends a session idle in its transaction) and takes
effect, audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

from replicas.harness import (
    CRM,
    READ,
    Agents,
    Replica,
    codes,
    open_task,
    revoke_agent,
    running_replicas,
)
from tether.core.audit import AuditKind, verify_chain
from tether.service.clock import ManualClock
from tether.store import SqlStore
from tether.store.db import STORE

TD = "spiffe://tether.local/agent/"
#: The serving replicas give up on a lock after 300 ms (their session's lock_timeout).
SHORT_LOCK_WAIT = "?options=" + quote("-c lock_timeout=300")
#: The stalled replica's own settings: its session is ended 1.5 s into a stall.
STALLED_BUSY = timedelta(milliseconds=1500)


SHARED = "shared"
#: A holder that is never stalled keeps its session far longer than any test takes.
HOLDING = timedelta(minutes=5)


@pytest.fixture
def serving(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[list[Replica]]:
    """Two replicas configured with one replica id: one partition, one head between them."""
    url = store_url + SHORT_LOCK_WAIT
    with running_replicas(tmp_path / "data", url, clock, 2, partitions=[SHARED] * 2) as pair:
        yield pair


@pytest.fixture
def separate(tmp_path: Path, store_url: str, clock: ManualClock) -> Iterator[list[Replica]]:
    """Two replicas with partitions of their own (``a`` and ``b``)."""
    with running_replicas(tmp_path / "data", store_url + SHORT_LOCK_WAIT, clock, 2) as pair:
        yield pair


class HeadHolder:
    """A third replica's store holding ``partition``'s head in an open write transaction, kept
    busy (a statement every 50 ms) until :meth:`stall` leaves its session idle, as a frozen
    process would."""

    def __init__(
        self,
        store_url: str,
        stack: ExitStack,
        partition: str = SHARED,
        busy: timedelta = STALLED_BUSY,
    ) -> None:
        self.store = SqlStore.postgres(store_url, lock_timeout=busy, partition=partition)
        stack.callback(self.store.close)
        self._writing = self.store.db.write(STORE, "hold the head")
        self.tx = self._writing.__enter__()  # the head is locked from here on
        self._stalled = threading.Event()
        self._busy = threading.Thread(target=self._keep_busy, daemon=True)
        self._busy.start()
        stack.callback(self.release)

    def _keep_busy(self) -> None:
        while not self._stalled.wait(0.05):
            self.tx.conn.exec_driver_sql("SELECT 1")

    def stall(self) -> None:
        self._stalled.set()
        self._busy.join(10)

    def release(self) -> None:
        self.stall()
        # The server ended the stalled session: its transaction is gone, and closing it fails.
        with suppress(Exception):
            self._writing.__exit__(None, None, None)


def test_a_stalled_head_holder_fails_decisions_closed_and_the_kill_switch_still_takes(
    serving: list[Replica], store_url: str, clock: ManualClock
) -> None:
    a, b = serving
    analyst = Agents(serving, "analyst", clock)
    human = a.runtime.approvers.add("oncall")
    try:
        task = open_task(analyst.on[0], [CRM])
        assert analyst.on[0].authorize(task["grant"], **READ).json()["decision"] == "allow"
        before = len(list(a.runtime.store.audit_records(partition=SHARED)))
        with ExitStack() as stack:
            holder = HeadHolder(store_url, stack)

            # Decisions fail closed, in their bounded lock wait, on either replica.
            for agent in analyst.on:
                failed = agent.authorize(task["grant"], **READ)
                assert failed.status_code == 200
                verdict = failed.json()
                assert verdict["decision"] == "deny", verdict
                assert codes(verdict) == ["audit_unavailable"], verdict

            # The holder stalls; the kill switch on the other replica waits past it.
            holder.stall()
            revoked = revoke_agent(b, human, TD + "analyst")
            assert revoked.status_code == 200, revoked.text

        refused = analyst.on[0].authorize(task["grant"], **READ).json()
        assert refused["decision"] == "deny"
        assert codes(refused)[0] in {"grant_revoked", "task_not_open"}
        records = list(a.runtime.store.audit_records(partition=SHARED))
        assert verify_chain(records, a.runtime.store.chain_head()).ok
        added = [r.kind for r in records[before:]]
        # The two failed decisions left no record; the revocation is audited with the task
        # it ended, and the refused call after it is a decision like any other.
        assert added[:2] == [AuditKind.AGENT_REVOKED, AuditKind.TASK_REVOKED], added
        assert added[2:] == [AuditKind.DECISION], added
    finally:
        analyst.close()


def test_a_stalled_replica_holds_only_its_own_partition_so_the_others_answer_at_once(
    separate: list[Replica], store_url: str, clock: ManualClock
) -> None:
    a, b = separate
    analyst = Agents(separate, "analyst", clock)
    human = a.runtime.approvers.add("oncall")
    try:
        task = open_task(analyst.on[0], [CRM])
        with ExitStack() as stack:
            # Replica "c" holds its partition's head, busy inside its transaction throughout.
            holder = HeadHolder(store_url, stack, partition="c", busy=HOLDING)

            # Neither replica waits on it: each allows (a wait would end, after the 300 ms
            # lock timeout, in audit_unavailable) ...
            for agent in analyst.on:
                verdict = agent.authorize(task["grant"], **READ).json()
                assert verdict["decision"] == "allow", verdict
            # ... and the kill switch takes effect on the first try.
            revoked = revoke_agent(b, human, TD + "analyst")
            assert revoked.status_code == 200, revoked.text
            holder.tx.conn.exec_driver_sql("SELECT 1")  # the holder's transaction is still open

        refused = analyst.on[1].authorize(task["grant"], **READ).json()
        assert refused["decision"] == "deny"
        assert codes(refused)[0] in {"grant_revoked", "task_not_open"}
        records = list(a.runtime.store.audit_records())
        assert {r.partition for r in records} == {"a", "b"}
        assert AuditKind.AGENT_REVOKED in [r.kind for r in records if r.partition == "b"]
    finally:
        analyst.close()

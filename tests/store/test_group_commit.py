"""Group commit: concurrent decisions share one transaction and one commit, none is answered
before that commit, a refused write rolls back alone, and a failed commit fails every write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ErrorCode, NotFound, Unavailable
from tether.core.ids import ApprovalId
from tether.service.ports import DecisionWrite
from tether.store import SqlStore
from tether.store.groupcommit import GroupCommit, Pending, WouldWait

from .conftest import Make, race


def _batched_commit() -> tuple[GroupCommit[int, int], list[list[int]], threading.Event]:
    """A group commit whose first batch waits on ``release``, recording every batch it runs."""
    batches: list[list[int]] = []
    release = threading.Event()

    def run(batch: Sequence[Pending[int, int]]) -> None:
        batches.append([p.work for p in batch])
        if len(batches) == 1:
            assert release.wait(10)
        for p in batch:
            p.finish(result=p.work * 10)

    return GroupCommit(run, wait_seconds=10), batches, release


def test_writes_queued_behind_a_commit_share_the_next_one() -> None:
    commit, batches, release = _batched_commit()
    results: dict[int, int] = {}

    def submit(n: int) -> None:
        results[n] = commit.submit(n)

    first = threading.Thread(target=submit, args=(0,))
    first.start()
    while not batches:  # the first write leads a batch of one and holds it open
        threading.Event().wait(0.001)
    others = [threading.Thread(target=submit, args=(n,)) for n in range(1, 9)]
    for t in others:
        t.start()
    while len(commit._queued) < 8:  # all eight are queued behind the open commit
        threading.Event().wait(0.001)
    release.set()
    for t in (first, *others):
        t.join(10)
    assert batches[0] == [0]
    assert sorted(batches[1]) == list(range(1, 9)) and len(batches) == 2
    assert results == {n: n * 10 for n in range(9)}


def test_a_failed_commit_fails_every_write_in_its_batch_and_the_next_batch_works() -> None:
    fail = True

    def run(batch: Sequence[Pending[int, int]]) -> None:
        if fail:
            raise Unavailable("disk full", code=ErrorCode.AUDIT_UNAVAILABLE)
        for p in batch:
            p.finish(result=p.work)

    commit: GroupCommit[int, int] = GroupCommit(run, wait_seconds=10)
    outcomes = race(6, commit.submit)
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    fail = False
    assert commit.submit(7) == 7


def test_a_write_nobody_could_lead_in_time_is_refused_and_never_run() -> None:
    ran: list[int] = []
    release = threading.Event()

    def run(batch: Sequence[Pending[int, int]]) -> None:
        ran.extend(p.work for p in batch)
        release.wait(10)
        for p in batch:
            p.finish(result=p.work)

    commit: GroupCommit[int, int] = GroupCommit(run, wait_seconds=0.05)
    holder = threading.Thread(target=commit.submit, args=(1,))
    holder.start()
    while not ran:
        threading.Event().wait(0.001)
    with pytest.raises(Unavailable, match="busy timeout"):
        commit.submit(2)
    release.set()
    holder.join(10)
    assert ran == [1]


def test_a_refused_write_rolls_back_alone_inside_a_batch(store: SqlStore, make: Make) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    writes = [
        DecisionWrite(make.decision(task, grant), make.entry(), None, None, None, (), None),
        DecisionWrite(
            make.decision(task, grant),
            make.entry(),
            None,
            ApprovalId("apr_" + "1" * 26),  # names no approval: refused
            None,
            (),
            None,
        ),
        DecisionWrite(make.decision(task, grant), make.entry(), None, None, None, (), None),
    ]
    batch: list[Pending[DecisionWrite, object]] = [Pending(w) for w in writes]
    store._decisions._run_batch(batch)  # type: ignore[arg-type]
    first, refused, third = batch
    assert isinstance(refused.error, NotFound) and refused.result is None
    assert refused.error.code is ErrorCode.APPROVAL_NOT_FOUND
    assert first.error is None and third.error is None
    assert store.get_decision(writes[1].decision.decision_id) is None
    for w in (writes[0], writes[2]):
        assert store.get_decision(w.decision.decision_id) is not None
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3, report  # task opened + two decisions, no gap


def test_concurrent_decisions_all_land_in_one_unbroken_chain(store: SqlStore, make: Make) -> None:
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    decisions = [make.decision(task, grant) for _ in range(24)]
    outcomes = race(24, lambda n: store.record_decision(DecisionWrite(decisions[n], make.entry())))
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    seqs = sorted(o.seq for o in outcomes)  # type: ignore[union-attr]
    assert seqs == list(range(2, 26))
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 25, report


def test_writes_awaited_on_an_event_loop_share_a_commit_led_by_the_writer_thread() -> None:
    commit, batches, release = _batched_commit()

    async def main() -> list[int]:
        first = asyncio.ensure_future(commit.submit_async(0))
        while not batches:  # the writer thread leads a batch of one and holds it open
            await asyncio.sleep(0.001)
        others = [asyncio.ensure_future(commit.submit_async(n)) for n in range(1, 9)]
        release.set()
        return list(await asyncio.gather(first, *others))

    try:
        assert asyncio.run(main()) == [n * 10 for n in range(9)]
        assert batches[0] == [0]
        assert sorted(batches[1]) == list(range(1, 9)) and len(batches) == 2
    finally:
        commit.close()


def test_a_failed_commit_fails_every_awaited_write_in_its_batch() -> None:
    def run(batch: Sequence[Pending[int, int]]) -> None:
        raise Unavailable("the disk is gone", code=ErrorCode.AUDIT_UNAVAILABLE)

    commit: GroupCommit[int, int] = GroupCommit(run, wait_seconds=10)

    async def main() -> list[int | BaseException]:
        waits = [commit.submit_async(n) for n in range(5)]
        return await asyncio.gather(*waits, return_exceptions=True)

    try:
        outcomes = asyncio.run(main())
    finally:
        commit.close()
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert {o.code for o in outcomes if isinstance(o, Unavailable)} == {ErrorCode.AUDIT_UNAVAILABLE}


def test_a_closed_group_commit_refuses_awaited_writes() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda batch: None, wait_seconds=10)
    commit.close()

    async def main() -> None:
        await commit.submit_async(1)

    with pytest.raises(Unavailable):
        asyncio.run(main())


@pytest.mark.parametrize("early", ["result", "refusal"])
def test_an_awaiting_loop_hears_of_its_write_only_once_the_whole_batch_is_done(early: str) -> None:
    # A runner finishes a write before its batch is done (a refused write, inside the
    # transaction): the loop must not hear of it until the batch is over, commit included.
    finished_early = threading.Event()
    release = threading.Event()

    def run(batch: Sequence[Pending[int, int]]) -> None:
        for p in batch:
            if early == "result":
                p.finish(result=p.work * 10)
            else:
                p.finish(error=NotFound("refused", code=ErrorCode.APPROVAL_NOT_FOUND))
        finished_early.set()
        assert release.wait(10)  # the commit, still under way

    commit: GroupCommit[int, int] = GroupCommit(run, wait_seconds=10)

    async def main() -> None:
        waiting = asyncio.ensure_future(commit.submit_async(4))
        assert await asyncio.to_thread(finished_early.wait, 10)
        for _ in range(5):  # every callback already handed to this loop has run
            await asyncio.sleep(0)
        assert not waiting.done(), "answered before its batch was done"
        release.set()
        if early == "result":
            assert await waiting == 40
        else:
            with pytest.raises(NotFound):
                await waiting

    try:
        asyncio.run(main())
    finally:
        release.set()
        commit.close()


# -- batches an event loop leads itself (run_now: SQLite) -----------------------------------------


def _loop_led(
    would_wait: int = 0,
) -> tuple[GroupCommit[int, int], list[tuple[str, list[int]]]]:
    """A group commit whose ``run_now`` records (thread, batch), and raises ``WouldWait`` for
    its first ``would_wait`` batches (having written nothing, as the store's does)."""
    runs: list[tuple[str, list[int]]] = []
    refusals = [would_wait]

    def run(batch: Sequence[Pending[int, int]]) -> None:
        runs.append((threading.current_thread().name, [p.work for p in batch]))
        for p in batch:
            p.finish(result=p.work * 10)

    def run_now(batch: Sequence[Pending[int, int]]) -> None:
        if refusals[0] > 0:
            refusals[0] -= 1
            raise WouldWait("a lock is taken")
        run(batch)

    return GroupCommit(run, wait_seconds=10, run_now=run_now), runs


def test_writes_queued_in_one_turn_of_the_loop_share_one_batch_led_on_the_loop() -> None:
    commit, runs = _loop_led()

    async def main() -> tuple[str, list[int]]:
        waits = [commit.submit_async(n) for n in range(8)]  # one turn: no await in between
        return threading.current_thread().name, list(await asyncio.gather(*waits))

    try:
        loop_thread, results = asyncio.run(main())
        assert results == [n * 10 for n in range(8)]
        assert runs == [(loop_thread, list(range(8)))]
        assert commit._writer is None  # no thread was needed
    finally:
        commit.close()


def test_the_loops_lead_waits_while_its_turns_queue_writes_at_most_two_turns() -> None:
    """Requests read in one poll of the sockets decide in the loop's next turn, after the lead
    the turn before scheduled: the lead waits a turn while the last one queued more writes,
    at most two turns. Here each turn queues one write: the first three share a commit."""
    commit, runs = _loop_led()

    async def main() -> tuple[str, list[int]]:
        loop = asyncio.get_running_loop()
        waits = [commit.submit_async(0)]  # schedules the lead for the next turn

        def queue(n: int) -> None:  # runs after the lead in each turn, as a decision would
            waits.append(commit.submit_async(n))
            if n < 3:
                loop.call_soon(queue, n + 1)

        loop.call_soon(queue, 1)
        while len(waits) < 4:
            await asyncio.sleep(0)
        return threading.current_thread().name, list(await asyncio.gather(*waits))

    try:
        loop_thread, results = asyncio.run(main())
        assert results == [0, 10, 20, 30]
        assert runs == [(loop_thread, [0, 1, 2]), (loop_thread, [3])]
    finally:
        commit.close()


def test_a_lone_write_on_the_loop_is_led_once_a_turn_adds_nothing() -> None:
    commit, runs = _loop_led()

    async def main() -> tuple[int, int]:
        waiting = commit.submit_async(4)
        turns = 0
        while not waiting.done():  # type: ignore[attr-defined]  # a future
            await asyncio.sleep(0)
            turns += 1
        return await waiting, turns

    try:
        assert asyncio.run(main()) == (40, 2)  # the turn it waited, and the hand-back
        assert [written for _, written in runs] == [[4]]
    finally:
        commit.close()


def test_a_batch_the_loop_cannot_lead_at_once_goes_whole_and_in_order_to_the_writer_thread() -> (
    None
):
    commit, runs = _loop_led(would_wait=1)

    async def main() -> list[int]:
        return list(await asyncio.gather(*(commit.submit_async(n) for n in range(5))))

    try:
        assert asyncio.run(main()) == [n * 10 for n in range(5)]
        assert runs == [("tether-group-commit", [0, 1, 2, 3, 4])]  # written once, in order
    finally:
        commit.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqlStore]:
    store = SqlStore.sqlite(tmp_path / "tether.db")
    yield store
    store.close()


def test_the_loop_never_waits_on_another_process_holding_the_write_lock(
    sqlite_store: SqlStore, make: Make
) -> None:
    """Another process (a CLI command, a sibling worker) holds SQLite's write lock: the
    decision waits for it on the writer thread, the event loop goes on serving meanwhile, and
    the decision is recorded once the lock is free."""
    task, grant = make.task()
    sqlite_store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    path = sqlite_store.db.engine.url.database
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process's write transaction, left open

    async def main() -> int:
        pending = asyncio.ensure_future(
            sqlite_store.record_decision_async(
                DecisionWrite(make.decision(task, grant), make.entry())
            )
        )
        turns = 0
        while turns < 50:  # the loop keeps turning while the decision waits
            await asyncio.sleep(0)
            turns += 1
        assert not pending.done()
        other.execute("COMMIT")
        record = await pending
        return record.seq

    try:
        assert asyncio.run(main()) == 2
    finally:
        other.close()
    report = verify_chain(sqlite_store.audit_records(), sqlite_store.chain_head())
    assert report.ok and report.records == 2, report


def test_a_write_someone_may_block_on_is_led_by_the_writer_thread_even_from_the_loop() -> None:
    """A queued effect that decisions wait for (a delegate's call waits on its parent's) must
    not be left to the loop that may itself be the one blocked waiting."""
    made = threading.Event()

    def run(batch: Sequence[Pending[int, int]]) -> None:
        for p in batch:
            p.finish(result=p.work * 10)
        made.set()

    commit: GroupCommit[int, int] = GroupCommit(run, wait_seconds=10, run_now=run)

    async def main() -> int:
        result = commit.submit_async(7, waited_on=True)
        assert made.wait(10), "the write waited for the loop that was blocked on it"
        return await result

    try:
        assert asyncio.run(main()) == 70
    finally:
        commit.close()


def test_a_loop_closed_before_its_turn_came_holds_up_no_other_loops_writes() -> None:
    commit, runs = _loop_led()
    abandoned = asyncio.new_event_loop()

    def queue_and_stop() -> None:
        commit.submit_async(1)  # its lead is scheduled for the next turn, which never comes
        abandoned.stop()

    abandoned.call_soon(queue_and_stop)
    abandoned.run_forever()
    abandoned.close()
    assert runs == []  # the turn never came

    async def main() -> int:
        # Bounded: with the old single flag this write was never led by anyone.
        return await asyncio.wait_for(commit.submit_async(2), timeout=10)

    try:
        assert asyncio.run(main()) == 20
        assert [written for _, written in runs] == [[1, 2]]  # the left write went with it
    finally:
        commit.close()


def _statements(store: SqlStore) -> list[str]:
    """Every statement the store's SQLite write connection runs from now on."""
    seen: list[str] = []
    db = store._decisions._db
    with db.write(ErrorCode.STORE_UNAVAILABLE, "open the write connection", lean=True):
        pass
    assert db._write_conn is not None
    raw = db._write_conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    raw.set_trace_callback(seen.append)
    return seen


def test_a_batch_of_plain_decisions_is_written_without_savepoints(
    tmp_path: Path, make: Make
) -> None:
    store = SqlStore.sqlite(tmp_path / "t.db")
    try:
        task, grant = make.task()
        store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
        seen = _statements(store)
        writes = [DecisionWrite(make.decision(task, grant), make.entry()) for _ in range(4)]
        batch: list[Pending[DecisionWrite, object]] = [Pending(w) for w in writes]
        store._decisions._run_batch(batch)  # type: ignore[arg-type]
        assert [p.error for p in batch] == [None] * 4
        assert not [s for s in seen if "SAVEPOINT" in s.upper()], seen
        assert sum(s.startswith("INSERT INTO decisions") for s in seen) == 4
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok and report.records == 5, report
    finally:
        store.close()


def test_a_plain_decision_that_fails_is_isolated_and_the_rest_of_its_batch_lands(
    tmp_path: Path, make: Make
) -> None:
    # Written without savepoints first, the batch rolls back whole when one write fails, and is
    # written again with a savepoint around each write: only the failing one is refused.
    path = tmp_path / "t.db"
    store = SqlStore.sqlite(path)
    try:
        task, grant = make.task()
        store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
        writes = [DecisionWrite(make.decision(task, grant), make.entry()) for _ in range(3)]
        doomed = writes[1].decision.decision_id
        outside = sqlite3.connect(path)
        outside.execute(
            "CREATE TRIGGER refuse_one BEFORE INSERT ON decisions "
            f"WHEN NEW.decision_id = '{doomed}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        outside.commit()
        outside.close()
        seen = _statements(store)
        batch: list[Pending[DecisionWrite, object]] = [Pending(w) for w in writes]
        store._decisions._run_batch(batch)  # type: ignore[arg-type]
        first, failed, third = batch
        assert isinstance(failed.error, Unavailable) and failed.result is None
        assert first.error is None and third.error is None
        assert store.get_decision(doomed) is None
        for w in (writes[0], writes[2]):
            assert store.get_decision(w.decision.decision_id) is not None
        # The first attempt rolled back, the second used savepoints.
        assert any("SAVEPOINT" in s.upper() for s in seen)
        report = verify_chain(store.audit_records(), store.chain_head())
        assert report.ok and report.records == 3, report  # task opened + two decisions
    finally:
        store.close()

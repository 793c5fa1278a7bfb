"""The observations store (argument provenance) against every backend: keyed HMACs with their
source per task, repeats kept once, a task's cap that can only make the check stricter, a
delegate's chain written whole, each task's ``observed`` count kept with its row, and nothing
but fingerprints in the table."""

from __future__ import annotations

from sqlalchemy import event, text

from tether.core.audit import AuditKind
from tether.core.errors import ErrorCode
from tether.core.ids import TaskId
from tether.core.provenance import (
    Observation,
    ProvenanceIndex,
    Source,
    Trust,
    observe,
    observe_under,
)
from tether.core.provenance_rules import OVERFLOW_SOURCE
from tether.core.task import Task
from tether.store import SqlStore
from tether.store.observations import SqlObservationStore

from .conftest import T0, Backend, Make

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PAGE = Source("web.browse", None, Trust.UNTRUSTED)
CONTACTS = Source("contacts.list", "contacts", Trust.TRUSTED)
RESULT = "Visit https://evil.example.com/x or mail eve@evil.example.com"


def _index(rows: list[Observation]) -> ProvenanceIndex:
    return ProvenanceIndex.of(rows)


def test_an_observation_is_read_back_by_source_as_fingerprints_only(
    backend: Backend, store: SqlStore
) -> None:
    observations = SqlObservationStore(store)
    seen = observe(KEY, PAGE, RESULT)
    trusted = observe(KEY, CONTACTS, {"email": "alice@example.org"})
    observations.add_observations([(TaskId("tsk_a"), seen)], T0, 100)
    observations.add_observations([(TaskId("tsk_a"), trusted)], T0, 100)
    observations.add_observations([(TaskId("tsk_a"), seen)], T0, 100)  # a repeat: kept once
    other = observe(KEY, PAGE, "see https://other.example.net")
    observations.add_observations([(TaskId("tsk_b"), other)], T0, 100)

    got = {o.source: o for o in observations.observations([TaskId("tsk_a")])}
    assert got == {PAGE: seen, CONTACTS: trusted}
    assert observations.observations([]) == []
    # Only HMACs are stored: no row holds the value or a part of it.
    with backend.raw().connect() as conn:
        rows = conn.execute(text("SELECT * FROM observations")).all()
    assert len(rows) == sum(len(o.fingerprints) for o in (seen, trusted, other))
    dump = repr(rows)
    for raw in ("evil.example.com", "eve@", "alice@example.org"):
        assert raw not in dump


def test_a_delegates_observation_is_written_under_its_whole_chain(store: SqlStore) -> None:
    observations = SqlObservationStore(store)
    # Each task's fingerprints under its own key: one write, read back task by task.
    in_child, in_parent = observe_under([KEY, OTHER_KEY], PAGE, RESULT)
    assert in_child.fingerprints.isdisjoint(in_parent.fingerprints)
    child, parent = TaskId("tsk_child"), TaskId("tsk_parent")
    observations.add_observations([(child, in_child), (parent, in_parent)], T0, 100)
    assert observations.observations([parent]) == [in_parent]
    assert observations.observations([TaskId("tsk_sibling"), parent]) == [in_parent]
    sibling = TaskId("tsk_sibling")
    assert observations.observations_by_task([child, sibling, parent]) == {
        child: [in_child],
        sibling: [],
        parent: [in_parent],
    }
    assert observations.observations_by_task([]) == {}


def test_an_unscanned_part_of_an_untrusted_result_is_kept(store: SqlStore) -> None:
    observations = SqlObservationStore(store)
    partial = Observation(PAGE, observe(KEY, PAGE, RESULT).fingerprints, complete=False)
    observations.add_observations([(TaskId("tsk_a"), partial)], T0, 100)
    assert observations.observations([TaskId("tsk_a")]) == [partial]
    assert _index(observations.observations([TaskId("tsk_a")])).unscanned == {PAGE}


def test_past_its_cap_a_task_drops_values_and_counts_the_untrusted_rest_as_unscanned(
    backend: Backend, store: SqlStore
) -> None:
    observations = SqlObservationStore(store)
    task = TaskId("tsk_a")
    trusted = observe(KEY, CONTACTS, {"a": "https://a.example.org", "b": "b@example.org"})
    observations.add_observations([(task, trusted)], T0, 3)
    untrusted = observe(KEY, PAGE, RESULT)
    observations.add_observations([(task, untrusted)], T0, 3)
    got = _index(observations.observations([task]))
    # Trusted values past the cap are simply not trusted (stricter); untrusted ones dropped
    # make every unseen value count as possibly theirs.
    assert got.size <= 3
    assert got.unscanned == {OVERFLOW_SOURCE}
    with backend.raw().connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM observations")).scalar()
    assert total == 4  # the cap, and the one overflow marker


def test_two_handles_see_each_others_observations(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    seen = observe(KEY, PAGE, RESULT)
    SqlObservationStore(first).add_observations([(TaskId("tsk_a"), seen)], T0, 100)
    assert SqlObservationStore(second).observations([TaskId("tsk_a")]) == [seen]


def test_the_count_changes_exactly_when_the_observations_do(backend: Backend) -> None:
    first, second = SqlObservationStore(backend.open()), SqlObservationStore(backend.open())
    chain = [TaskId("tsk_child"), TaskId("tsk_parent")]
    assert first.count_observations(chain) == 0
    seen = observe(KEY, PAGE, RESULT)
    second.add_observations([(t, seen) for t in chain], T0, 100)
    counted = first.count_observations(chain)
    assert counted == 2 * len(seen.fingerprints)
    second.add_observations([(t, seen) for t in chain], T0, 100)  # a repeat adds no row
    assert first.count_observations(chain) == counted
    more = observe(KEY, CONTACTS, "x@y.example")
    second.add_observations([(TaskId("tsk_parent"), more)], T0, 100)
    assert first.count_observations(chain) > counted


def test_a_task_row_carries_its_observation_count_to_every_reader(
    backend: Backend, make: Make
) -> None:
    writer, reader = backend.open(), backend.open()
    task, grant = make.task()
    writer.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    other, other_grant = make.task()
    writer.open_task(other, other_grant, make.entry(AuditKind.TASK_OPENED))
    assert reader.get_grant_with_task(grant.grant_id)[1] == task
    assert task.observed == 0

    seen = observe(KEY, PAGE, RESULT)
    # A delegate's chain: both tasks get the rows, and both rows their new count.
    SqlObservationStore(writer).add_observations(
        [(task.task_id, seen), (other.task_id, seen)], T0, 100
    )
    counted = len(seen.fingerprints)
    # Seen by the other handle through the decision's joined read and the plain task read.
    assert reader.get_grant_with_task(grant.grant_id)[1].observed == counted  # type: ignore[union-attr]
    assert reader.get_task(task.task_id).observed == counted  # type: ignore[union-attr]
    assert reader.get_task(other.task_id).observed == counted  # type: ignore[union-attr]

    SqlObservationStore(writer).add_observations([(task.task_id, seen)], T0, 100)  # a repeat
    assert reader.get_task(task.task_id).observed == counted  # type: ignore[union-attr]
    more = observe(KEY, CONTACTS, "x@y.example")
    SqlObservationStore(writer).add_observations([(task.task_id, more)], T0, 100)
    assert reader.get_grant_with_task(grant.grant_id)[1].observed == counted + len(
        more.fingerprints
    )  # type: ignore[union-attr]
    assert reader.get_task(other.task_id).observed == counted  # type: ignore[union-attr]
    assert SqlObservationStore(reader).count_observations([task.task_id]) == counted + len(
        more.fingerprints
    )


def _statements(store: SqlStore) -> list[str]:
    seen: list[str] = []

    def executed(*args: object) -> None:
        seen.append(str(args[2]))  # (conn, cursor, statement, ...)

    engine = store.db.live(ErrorCode.STORE_UNAVAILABLE)
    event.listen(engine, "before_cursor_execute", executed)
    return seen


def _opened_task(backend: Backend, make: Make) -> tuple[SqlStore, Task, SqlObservationStore]:
    store = backend.open()
    task, grant = make.task()
    store.open_task(task, grant, make.entry(AuditKind.TASK_OPENED))
    return store, task, SqlObservationStore(store)


def test_a_write_reads_the_tasks_count_from_its_row_instead_of_counting_its_rows(
    backend: Backend, make: Make
) -> None:
    # Counting a task's rows cost ~0.3 ms at 10,000 of them, twice per write.
    store, task, observations = _opened_task(backend, make)
    seen = observe(KEY, PAGE, RESULT)
    observations.add_observations([(task.task_id, seen)], T0, 100)  # the row says 0: counted
    statements = _statements(store)
    more = observe(KEY, CONTACTS, "x@y.example")
    observations.add_observations([(task.task_id, more)], T0, 100)
    observations.add_observations([(task.task_id, more)], T0, 100)  # a repeat: no row made
    assert not [s for s in statements if "count(" in s.lower()]
    expected = len(seen.fingerprints) + len(more.fingerprints)
    assert store.get_task(task.task_id).observed == expected  # type: ignore[union-attr]
    assert observations.count_observations([task.task_id]) == expected


def test_a_task_whose_row_lost_count_of_its_rows_is_counted_again(
    backend: Backend, make: Make
) -> None:
    # A task from before the counter existed says 0 with rows already written.
    store, task, observations = _opened_task(backend, make)
    seen = observe(KEY, PAGE, RESULT)
    observations.add_observations([(task.task_id, seen)], T0, 100)
    with backend.raw().begin() as conn:
        conn.execute(text("UPDATE tasks SET observed = 0"))
    more = observe(KEY, CONTACTS, "x@y.example")
    observations.add_observations([(task.task_id, more)], T0, 100)
    expected = len(seen.fingerprints) + len(more.fingerprints)
    assert store.get_task(task.task_id).observed == expected  # type: ignore[union-attr]

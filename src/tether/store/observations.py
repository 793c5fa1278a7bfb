"""What each task's agent has seen in tool results (argument provenance), in SQL.

One row per task, value fingerprint (a keyed HMAC under the task's own key, never the value) and
source; a row whose
fingerprint is empty marks a source part of whose result went unscanned. Rows are only
inserted, each at most once (the primary key; a repeat is ignored), and a task holds at most the
limit the service passes: past it, fingerprints are dropped and, for an untrusted source, the
task gets the one :data:`~tether.core.provenance_rules.OVERFLOW_SOURCE` marker instead, so that
dropping can only make the provenance check stricter. Writes do not take the audit chain's head:
an observation is not an audit record (the decision it later decides is).

Because rows are only ever inserted, once each, a task's row count changes exactly when what
it observed does. The write that inserts rows raises the task's ``observed`` column to its new
row count in the same transaction (by the rows it made; see :func:`_add`), so every read of
the task (the one each decision already makes) says whether a copy of its observations kept in
memory is still current: the count only grows, and a reader that sees it sees the rows counted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Insert, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tether.core.errors import ErrorCode
from tether.core.ids import TaskId
from tether.core.provenance import Observation, Source, Trust
from tether.core.provenance_rules import OVERFLOW_SOURCE
from tether.service.ports import ObservedRows
from tether.store.db import Writer
from tether.store.driver import DriverStatement, DriverStatements
from tether.store.schema import observations, tasks

if TYPE_CHECKING:  # sql.py queues this module's writes with an effect (observed_write)
    from tether.store.sql import SqlStore

_STORE = ErrorCode.STORE_UNAVAILABLE
#: The fingerprint column of a row marking a source as partly unscanned.
UNSCANNED = ""

_COUNT = select(func.count()).where(observations.c.task_id == bindparam("o_task"))
#: The task's row count, kept on its row (see the module docstring).
_SET_OBSERVED = (
    update(tasks)
    .where(tasks.c.task_id == bindparam("o_task"))
    .values(observed=_COUNT.scalar_subquery())
)
_OBSERVED = select(tasks.c.observed).where(tasks.c.task_id == bindparam("o_task"))
_RAISE_OBSERVED = (
    update(tasks)
    .where(tasks.c.task_id == bindparam("o_task"))
    .values(observed=tasks.c.observed + bindparam("o_added"))
)
_FOR_TASKS = select(
    observations.c.task_id,
    observations.c.fingerprint,
    observations.c.tool,
    observations.c.dataset,
    observations.c.trust,
).where(observations.c.task_id.in_(bindparam("o_tasks", expanding=True)))


def _insert_ignoring_repeats(backend: str) -> Insert:
    if backend == "postgresql":
        return postgresql.insert(observations).on_conflict_do_nothing()
    return sqlite.insert(observations).on_conflict_do_nothing()


_INSERT = {backend: _insert_ignoring_repeats(backend) for backend in ("postgresql", "sqlite")}


def observed_write(backend: str, rows: ObservedRows) -> _Queued:
    """``rows`` as a write queued with its call's effect
    (:class:`~tether.store.decision_log.EffectWrite`)."""
    return _Queued(_INSERT[backend], rows.entries, rows.at, rows.limit, rows.key)


_ACTION = "record what the task observed"


class SqlObservationStore:
    """The ``observations`` table of one :class:`~tether.store.SqlStore`
    (implements :class:`tether.service.ports.ObservationStore`)."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._insert = _INSERT[store.backend]

    def add_observations(
        self, entries: Sequence[tuple[TaskId, Observation]], at: datetime, limit: int
    ) -> None:
        db = self._store.db
        with db.write_conn(_STORE, _ACTION) as conn:
            _add(conn, db.prepared, self._insert, entries, at, limit)

    def queue_observations(
        self, entries: Sequence[tuple[TaskId, Observation]], at: datetime, limit: int, key: str
    ) -> Awaitable[object]:
        """:meth:`add_observations`, queued into the decisions' group commit (no transaction of
        its own) and awaited on the running event loop; the decisions on the entries' tasks
        wait for it. ``key``: what the write, and the same write retried, is known by."""
        return self._store.queue_write(_Queued(self._insert, tuple(entries), at, limit, key))

    def count_observations(self, task_ids: Sequence[TaskId]) -> int:
        total = 0
        with self._store.db.read(_STORE, "count what the task observed") as conn:
            for task_id in dict.fromkeys(task_ids):
                total += int(conn.execute(_COUNT, {"o_task": task_id}).scalar() or 0)
        return total

    def observations(self, task_ids: Sequence[TaskId]) -> list[Observation]:
        return _grouped(self._rows(task_ids))

    def observations_by_task(self, task_ids: Sequence[TaskId]) -> dict[TaskId, list[Observation]]:
        by_task: dict[TaskId, list[Row]] = {t: [] for t in task_ids}
        for row in self._rows(task_ids):
            by_task[TaskId(str(row[0]))].append(row)
        return {task_id: _grouped(rows) for task_id, rows in by_task.items()}

    def _rows(self, task_ids: Sequence[TaskId]) -> Sequence[Row]:
        if not task_ids:
            return []
        with self._store.db.read(_STORE, "read what the task observed") as conn:
            return conn.execute(_FOR_TASKS, {"o_tasks": list(dict.fromkeys(task_ids))}).all()


Row = Sequence[object]


def _add(
    conn: Connection,
    prepared: DriverStatements,
    insert: Insert,
    entries: Sequence[tuple[TaskId, Observation]],
    at: datetime,
    limit: int,
) -> None:
    """The rows of ``entries``, and each task's new ``observed`` count, in ``conn``'s
    transaction, each statement on the driver (``prepared``, :mod:`tether.store.driver`).

    A task's count is read from its row, not counted: counting a task's rows cost ~0.3 ms at
    10,000 of them, twice per write. The count is then raised by the rows the insert reports it
    made (a repeat is not one), as one ``observed = observed + n`` that concurrent writers add to
    alike. A task whose row says 0 is counted (few rows, or a task from before the counter), and
    its row set to its exact count, as is one whose insert reported no row count."""
    counts: dict[str, int] = {}
    added: dict[str, int] = {}
    recount: set[str] = set()
    for task_id, observation in entries:
        if task_id not in counts:
            counts[task_id] = _scalar(prepared(_OBSERVED, _ACTION), conn, task_id)
            if counts[task_id] == 0:
                counts[task_id] = _scalar(prepared(_COUNT, _ACTION), conn, task_id)
                recount.add(task_id)
        source = observation.source
        fingerprints = sorted(observation.fingerprints)
        room = max(0, limit - counts[task_id])
        kept = fingerprints[:room]
        rows = [_row(task_id, fp, source, at) for fp in kept]
        dropped = len(kept) < len(fingerprints)
        if source.trust is Trust.UNTRUSTED and (dropped or not observation.complete):
            # INVARIANT: what is dropped or unscanned of an untrusted result counts as
            # untrusted; the marker of an over-full task is one row, whatever the source.
            marker = source if not dropped and room > len(kept) else OVERFLOW_SOURCE
            rows.append(_row(task_id, UNSCANNED, marker, at))
        if rows:
            made = prepared(insert, _ACTION).run_many(conn, rows)
            if made < 0:  # not reported: count the task's rows instead
                made = len(rows)
                recount.add(task_id)
            counts[task_id] += made
            added[task_id] = added.get(task_id, 0) + made
    # In task order, so that two writes over one chain take the rows' locks alike.
    for counted in sorted(counts):
        if counted in recount:
            prepared(_SET_OBSERVED, _ACTION).run(conn, {"o_task": counted})
        elif added.get(counted):
            raised = {"o_task": counted, "o_added": added[counted]}
            prepared(_RAISE_OBSERVED, _ACTION).run(conn, raised)


def _scalar(statement: DriverStatement, conn: Connection, task_id: str) -> int:
    """The one value ``statement`` reads for ``task_id`` (0 for no row, or NULL)."""
    found = statement.rows(conn, {"o_task": task_id})
    return int(found[0][0] or 0) if found else 0


@dataclass(frozen=True, slots=True)
class _Queued:
    """Observations queued into the group commit
    (:class:`~tether.store.decision_log.QueuedWrite`)."""

    insert: Insert
    entries: tuple[tuple[TaskId, Observation], ...]
    at: datetime
    limit: int
    key: str

    @property
    def task_ids(self) -> Sequence[str]:
        return tuple(dict.fromkeys(task_id for task_id, _ in self.entries))

    @property
    def locks(self) -> Sequence[str]:
        return self.task_ids  # their ``observed`` counts are updated

    def apply(self, tx: Writer) -> None:
        _add(tx.conn, tx.prepared, self.insert, self.entries, self.at, self.limit)


def _grouped(rows: Iterable[Row]) -> list[Observation]:
    """Rows as one observation per source."""
    seen: dict[Source, set[str]] = {}
    partial: set[Source] = set()
    for _task, fp, tool, dataset, trust in rows:
        source = Source(str(tool), str(dataset) or None, Trust(str(trust)))
        found = seen.setdefault(source, set())
        if fp == UNSCANNED:
            partial.add(source)
        else:
            found.add(str(fp))
    return [
        Observation(source, frozenset(fps), complete=source not in partial)
        for source, fps in seen.items()
    ]


def _row(task_id: str, fingerprint: str, source: Source, at: datetime) -> dict[str, object]:
    return {
        "task_id": task_id,
        "fingerprint": fingerprint,
        "tool": source.tool,
        "dataset": source.dataset or "",
        "trust": source.trust.value,
        "observed_at": at,
    }

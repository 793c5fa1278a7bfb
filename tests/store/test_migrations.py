"""Schema migrations (Alembic), on SQLite and a real PostgreSQL.

The revisions must produce exactly the tables :mod:`tether.store.schema` declares; a database an
older tether made with ``create_all`` is recognised, stamped and upgraded with its rows; a newer
tether's database is refused; ``tether db current`` and ``tether db upgrade`` report and apply.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import (
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    Table,
    insert,
    inspect,
    text,
    update,
)
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.audit import (
    GENESIS_HASH,
    AuditKind,
    AuditRecord,
    ChainFormat,
    ChainHead,
    seal,
    verify_chain,
)
from tether.core.errors import ConfigurationError
from tether.core.logcheck import verify_log
from tether.core.task import Task
from tether.identity.audit_key import CheckpointKey
from tether.service.checkpoints import Checkpointer
from tether.service.clock import ManualClock
from tether.store import SCHEMA_VERSION, SqlStore, schema
from tether.store import migrate as migrations
from tether.store.checkpoints import SqlCheckpointStore
from tether.store.codec import audit_at, audit_params, grant_params, task_params

from .conftest import Backend, Make, provisioned

runner = CliRunner()
HEAD = migrations.head()


@pytest.fixture
def pg(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with provisioned("postgresql", request, tmp_path) as db:
        yield db


@contextmanager
def _connected(backend: Backend) -> Iterator[Connection]:
    engine = backend.raw()
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _differences(backend: Backend) -> list[object]:
    """What Alembic finds between the database and ``schema.metadata`` (types included)."""
    with _connected(backend) as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": schema.VERSION_TABLE}
        )
        return list(compare_metadata(context, schema.metadata))


def _tables(backend: Backend) -> set[str]:
    with _connected(backend) as conn:
        return set(inspect(conn).get_table_names())


def _shape(backend: Backend) -> dict[str, object]:
    """Every tether table as the database reports it: columns, keys, indexes, constraints and,
    on SQLite, the exact ``CREATE`` statements (which decide, say, the rowid alias)."""
    shape: dict[str, object] = {}
    with _connected(backend) as conn:
        insp = inspect(conn)
        for name in sorted(set(insp.get_table_names()) - {schema.VERSION_TABLE}):
            shape[name] = {
                "columns": [
                    (c["name"], c["type"].compile(dialect=conn.dialect), c["nullable"])
                    for c in insp.get_columns(name)
                ],
                "pk": insp.get_pk_constraint(name)["constrained_columns"],
                "fks": sorted(
                    (fk["name"], *fk["constrained_columns"], fk["referred_table"])
                    for fk in insp.get_foreign_keys(name)
                ),
                "indexes": sorted(
                    (ix["name"], tuple(ix["column_names"]), ix["unique"])
                    for ix in insp.get_indexes(name)
                ),
                "uniques": sorted(
                    (uc["name"], tuple(uc["column_names"]))
                    for uc in insp.get_unique_constraints(name)
                ),
            }
        if conn.dialect.name == "sqlite":
            # Whitespace aside: a column added by ALTER TABLE is stored as ", step ..." after
            # the last line, where create_all writes it on a line of its own; and after the
            # table's constraints when it has some (its columns' order is compared above).
            shape["sqlite_master"] = [
                (kind, name, None if sql is None else _clauses(sql))
                for kind, name, sql in conn.execute(
                    text(
                        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name != :v "
                        "ORDER BY name"
                    ),
                    {"v": schema.VERSION_TABLE},
                ).all()
            ]
    return shape


def _clauses(sql: str) -> str:
    """A ``CREATE`` statement without whitespace, its top-level clauses in sorted order."""
    flat = "".join(sql.split())
    head, paren, body = flat.partition("(")
    if not paren:
        return flat
    body, tail = body[: body.rindex(")")], body[body.rindex(")") :]
    parts, depth, start = [], 0, 0
    for i, char in enumerate(body):
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    return head + paren + ",".join(sorted(parts)) + tail


def _rows(backend: Backend, sql: str) -> list[tuple[object, ...]]:
    with _connected(backend) as conn:
        return [tuple(r) for r in conn.execute(text(sql)).all()]


def _inspect_only(backend: Backend) -> SqlStore:
    store = SqlStore(backend.url, migrate=False)
    backend.handles.append(store)
    return store


# -- the database an older tether made, by its own code path -------------------------------------


#: Columns added to a table after tether began using Alembic.
_LATER_COLUMNS = {
    "budget_holds": {"step"},
    "tasks": {"observed", "provenance_secret"},
    "audit": {"partition_id"},
}


def _tables_at(version: int, *, kill_switch: bool, decisions_index: bool) -> MetaData:
    """A copy of the tables tether declared at ``version``, before it used Alembic. Version 3 had
    no leases, and early on no kill switch; the decisions index came during version 4. Neither
    came with a bump: the old code created missing tables (not indexes) on every start. No
    version before Alembic had the budget holds' ``step`` (version 5) or the audit checkpoints
    (version 6) or the observations (version 7) or the tasks' ``observed`` (version 8) or the
    gateway events (version 11)."""
    later = {"audit_checkpoints", "observations", "gateway_events"}
    left_out = {"leases", *later} if version == 3 else set(later)
    if not kill_switch:
        left_out.add("revoked_agents")
    tables = MetaData()
    for table in schema.metadata.sorted_tables:
        if table.name in left_out:
            continue
        if table.name == "audit_head":
            # One row, id 1, before the log was partitioned (version 10).
            Table(
                "audit_head",
                tables,
                Column("id", Integer, primary_key=True, autoincrement=False),
                Column("seq", table.c.seq.type, nullable=False),
                Column("hash", table.c.hash.type, nullable=False),
            )
            continue
        if table.name == "audit":
            # Keyed by seq alone before the log was partitioned (version 10).
            Table(
                "audit",
                tables,
                *(
                    Column(
                        c.name,
                        c.type,
                        nullable=c.nullable,
                        primary_key=c.name == "seq",
                        autoincrement=False,
                        unique=c.unique,
                    )
                    for c in table.columns
                    if c.name != "partition_id"
                ),
            )
            continue
        if table.name in _LATER_COLUMNS:
            # The holds before version 5: no step; the tasks before version 8: no observed.
            copy = Table(
                table.name,
                tables,
                *(
                    Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key)
                    for c in table.columns
                    if c.name not in _LATER_COLUMNS[table.name]
                ),
                *(Index(i.name, *(c.name for c in i.columns)) for i in table.indexes),
            )
        else:
            copy = table.to_metadata(tables)
        if not decisions_index:
            for index in [i for i in copy.indexes if i.name == "ix_decisions_task_id"]:
                copy.indexes.discard(index)
    return tables


def make_legacy(
    backend: Backend, version: int, *, kill_switch: bool = True, decisions_index: bool = False
) -> None:
    """What the old ``SqlStore._bootstrap`` did on first start: ``create_all``, the schema
    version, the chain head's row."""
    tables = _tables_at(version, kill_switch=kill_switch, decisions_index=decisions_index)
    engine = backend.raw()
    try:
        with engine.begin() as conn:
            tables.create_all(conn)
            conn.execute(
                insert(schema.meta).values(key=schema.SCHEMA_VERSION_KEY, value=str(version))
            )
            conn.execute(insert(tables.tables["audit_head"]).values(id=1, seq=0, hash=GENESIS_HASH))
    finally:
        engine.dispose()


def write_history(backend: Backend, make: Make) -> tuple[Task, list[AuditRecord]]:
    """A task, its grant and two chained audit records, written as the old code wrote them.
    The task is returned as this code reads it back: open from before version 9, its
    provenance secret is empty (it keeps the master key until it ends)."""
    task, grant = make.task()
    task = replace(task, provenance_secret=b"")
    records: list[AuditRecord] = []
    for kind in (AuditKind.POLICY_LOADED, AuditKind.TASK_OPENED):
        head = ChainHead(records[-1].seq, records[-1].hash) if records else None
        entry = make.entry(kind, task_id=task.task_id)
        records.append(
            seal(
                head,
                record_id=entry.record_id,
                at=audit_at(entry.at),
                kind=entry.kind,
                agent=entry.agent,
                task_id=entry.task_id,
                body=entry.body,
                format=ChainFormat.LEGACY,
            )
        )
    old_audit = _tables_at(4, kill_switch=True, decisions_index=False).tables["audit"]
    engine = backend.raw()
    try:
        with engine.begin() as conn:
            params = task_params(task)
            del params["observed"]  # not a column before version 8
            del params["provenance_secret"]  # nor this before version 9
            conn.execute(insert(schema.tasks), params)
            conn.execute(insert(schema.grants), grant_params(grant))
            for record in records:
                row = audit_params(record)
                del row["partition_id"]  # not a column before version 10
                conn.execute(insert(old_audit), row)
            conn.execute(
                update(schema.audit_head).values(seq=records[-1].seq, hash=records[-1].hash)
            )
    finally:
        engine.dispose()
    return task, records


# -- the revisions -------------------------------------------------------------------------------


def test_the_revisions_are_one_line_ending_at_the_schema_version_this_code_writes(
    backend: Backend,
) -> None:
    assert HEAD == schema.SCHEMA_REVISION
    state = _inspect_only(backend).schema_state()
    assert state.revision is None and state.head == HEAD
    assert [r.id for r in state.pending] == [
        "0001",
        "0002",
        "0003",
        "0004",
        "0005",
        "0006",
        "0007",
        "0008",
        "0009",
        "0010",
        "0011",
    ]
    assert all(r.title for r in state.pending)

    store = backend.open()
    # A chain begun now is of format 2 (RFC 8785).
    assert sorted(_rows(backend, "SELECT key, value FROM tether_meta")) == [
        ("audit_chain_format", "2"),
        ("schema_version", str(SCHEMA_VERSION)),
    ]
    assert store.chain_format is ChainFormat.JCS
    assert _rows(backend, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(HEAD,)]


def test_upgrading_an_empty_database_gives_exactly_the_declared_schema(
    backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    store = backend.open()
    assert store.schema_state().up_to_date
    assert _differences(backend) == []
    assert _tables(backend) == {*schema.metadata.tables, schema.VERSION_TABLE}

    # ... and exactly what the old create_all made, so stamping such a database is sound.
    (tmp_path / "old").mkdir()
    with provisioned(backend.name, request, tmp_path / "old") as old:
        schema.metadata.create_all(old.raw())
        assert _shape(old) == _shape(backend)


def test_a_current_database_opens_without_loading_alembic(tmp_path: Path) -> None:
    SqlStore.sqlite(tmp_path / "tether.db").close()
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tether.store import SqlStore\n"
        f"SqlStore.sqlite(Path({str(tmp_path / 'tether.db')!r})).close()\n"
        "assert not [m for m in sys.modules if m.startswith('alembic')], 'alembic was loaded'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_opening_a_current_database_changes_nothing(backend: Backend, make: Make) -> None:
    backend.open().append_audit(make.entry())
    before = _shape(backend)
    state = backend.open().schema_state()
    assert state.up_to_date and state.revision == HEAD and state.pending == ()
    assert _shape(backend) == before


# -- databases from before Alembic ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kill_switch", "decisions_index", "stamped_at"),
    [
        (3, False, False, "0001"),
        (3, True, False, "0002"),
        (4, True, False, "0003"),
        (4, True, True, "0003"),
    ],
    ids=["v3-before-kill-switch", "v3", "v4-before-decisions-index", "v4"],
)
def test_a_database_from_before_alembic_is_stamped_upgraded_and_keeps_its_rows(
    backend: Backend,
    make: Make,
    version: int,
    kill_switch: bool,
    decisions_index: bool,
    stamped_at: str,
) -> None:
    make_legacy(backend, version, kill_switch=kill_switch, decisions_index=decisions_index)
    task, records = write_history(backend, make)

    state = _inspect_only(backend).schema_state()
    assert (state.revision, state.legacy_version) == (stamped_at, version)
    assert not state.up_to_date
    later = [
        r
        for r in ("0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010", "0011")
        if r > stamped_at
    ]
    assert [r.id for r in state.pending] == later

    store = backend.open()
    assert store.schema_state().up_to_date
    assert _differences(backend) == []
    assert _rows(backend, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [(HEAD,)]
    # The chain had begun: it stays of format 1, so every hash it holds stays as it was.
    assert sorted(_rows(backend, "SELECT key, value FROM tether_meta")) == [
        ("audit_chain_format", "1"),
        ("schema_version", str(SCHEMA_VERSION)),
    ]
    assert store.chain_format is ChainFormat.LEGACY
    # The rows are untouched and the chain goes on from them, in its own format.
    assert store.get_task(task.task_id) == task
    assert list(store.audit_records()) == records
    appended = store.append_audit(make.entry())
    assert appended.format is ChainFormat.LEGACY and "format" not in appended.to_json()
    report = verify_chain(store.audit_records(), store.chain_head())
    assert report.ok and report.records == 3
    # ... and is checkpointed in its own format.
    key = CheckpointKey(Ed25519PrivateKey.generate())
    made = Checkpointer(
        log=store,
        checkpoints=SqlCheckpointStore(store),
        signer=key.signer(),
        verify=key.public().verifies,
        clock=ManualClock(),
    ).tick()
    assert made is not None and made.format is ChainFormat.LEGACY and made.size == 3
    checked = verify_log(
        store.audit_records(), [made], key.public().verifies, head=store.chain_head()
    )
    assert checked.ok and checked.anchored == 3


def test_a_legacy_database_from_a_newer_tether_is_refused(backend: Backend) -> None:
    make_legacy(backend, 4)
    backend.execute(
        "UPDATE tether_meta SET value = :v WHERE key = 'schema_version'", v=str(SCHEMA_VERSION + 1)
    )
    with pytest.raises(ConfigurationError) as caught:
        backend.open()
    assert "newer tether" in caught.value.message
    assert schema.VERSION_TABLE not in _tables(backend)  # nothing was stamped


@pytest.mark.parametrize("found", ["2", "banana"])
def test_a_legacy_version_tether_cannot_adopt_is_refused(backend: Backend, found: str) -> None:
    make_legacy(backend, 3)
    backend.execute("UPDATE tether_meta SET value = :v WHERE key = 'schema_version'", v=found)
    with pytest.raises(ConfigurationError) as caught:
        backend.open()
    assert "cannot use" in caught.value.message
    assert schema.VERSION_TABLE not in _tables(backend)


def test_a_newer_revision_is_refused_and_left_alone(backend: Backend, make: Make) -> None:
    backend.open().append_audit(make.entry(AuditKind.POLICY_LOADED))
    backend.execute(f"UPDATE {schema.VERSION_TABLE} SET version_num = '0999'")
    for attempt in (backend.open, lambda: _inspect_only(backend)):
        with pytest.raises(ConfigurationError) as caught:
            attempt()
        assert "newer tether" in caught.value.message
        assert "'0999'" in caught.value.message
    assert _rows(backend, f"SELECT version_num FROM {schema.VERSION_TABLE}") == [("0999",)]


# -- tether db -----------------------------------------------------------------------------------


def _where(backend: Backend) -> list[str]:
    if backend.name == "sqlite":
        return ["-d", str(backend.root)]
    return ["--store-url", backend.url]


def _db(backend: Backend, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["db", *args, *_where(backend)])
    return result.exit_code, " ".join(result.output.split())


def test_tether_db_current_and_upgrade(backend: Backend, make: Make) -> None:
    make_legacy(backend, 3)
    task, _ = write_history(backend, make)

    code, out = _db(backend, "current")
    assert code == 0, out
    assert "revision 0002 (schema version 3" in out and "not stamped yet" in out
    assert "9 migration(s) pending: 0003" in out and "tether db upgrade" in out
    assert _db(backend, "current", "--check")[0] == 1

    code, out = _db(backend, "upgrade")
    assert code == 0, out
    assert f"→ {HEAD}" in out and "applied: 0003" in out

    code, out = _db(backend, "current", "--check")
    assert code == 0, out
    assert f"revision {HEAD}" in out and "up to date" in out
    code, out = _db(backend, "upgrade")
    assert code == 0 and f"already at {HEAD}" in out
    assert backend.open().get_task(task.task_id) == task


def test_tether_db_never_shows_the_password(pg: Backend) -> None:
    for command in ("current", "upgrade"):
        code, out = _db(pg, command)
        assert code == 0, out
        assert "postgresql store" in out
        assert pg.url not in out and pg.pg.password not in out


def test_tether_db_upgrade_creates_the_schema_of_an_empty_database(backend: Backend) -> None:
    code, out = _db(backend, "current", "--check")
    if backend.name == "sqlite":
        # No store in the directory: nothing is created by asking.
        assert code == 4 and "store_not_found" in out  # not found
        assert not backend.path.exists()
    else:
        assert code == 1 and "empty (no tether tables)" in out and "11 migration(s)" in out
    code, out = _db(backend, "upgrade")
    assert code == 0, out
    assert f"upgraded empty (no tether tables) → {HEAD}" in out
    assert "applied: 0001" in out and HEAD in out
    assert _differences(backend) == []


def test_tether_db_refuses_a_newer_database(backend: Backend) -> None:
    backend.open()
    backend.execute(f"UPDATE {schema.VERSION_TABLE} SET version_num = '0999'")
    for command in ("current", "upgrade"):
        code, out = _db(backend, command)
        assert code == 2 and "configuration" in out and "newer tether" in out


def test_every_revision_refuses_to_go_back() -> None:
    scripts = list(ScriptDirectory(str(migrations.MIGRATIONS)).walk_revisions())
    assert len(scripts) == int(HEAD)
    for script in scripts:
        with pytest.raises(NotImplementedError, match="forward only"):
            script.module.downgrade()

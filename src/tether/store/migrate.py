"""Where a database's schema stands, and bringing it to this tether's revision (Alembic).

The revisions live in :mod:`tether.store.migrations`. A database is one of:

- *empty*: no tether tables; every revision is pending.
- *stamped*: :data:`VERSION_TABLE` names one revision. If this tether does not know it, a newer
  tether wrote the database and it is refused (``ConfigurationError``), never opened.
- *from before Alembic*: only ``tether_meta.schema_version`` (3 or 4) says what it holds. Its
  revision is read off its tables (:func:`_legacy_revision`), stamped, then upgraded from there.

:func:`upgrade` works on the caller's connection, inside the caller's transaction: the stamp,
every revision and the version table's update commit together, or roll back together. The caller
serializes that transaction across replicas (:func:`tether.store.dialect.serialize_bootstrap`),
so exactly one replica migrates and the others then find the schema current.

Reading the state (:func:`schema_state`) needs only ``SELECT`` on :data:`VERSION_TABLE` and
``tether_meta``: a replica connecting with the runtime role to a current database runs no DDL.

The version table is ``tether_alembic_version``, not Alembic's default ``alembic_version``, so
tether can share a schema with an application that keeps its own Alembic history.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Connection, String, column, inspect, select, table

from tether.core.errors import ConfigurationError
from tether.store.schema import (
    SCHEMA_REVISION,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    VERSION_TABLE,
    meta,
)

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

MIGRATIONS: Final = Path(__file__).with_name("migrations")

_VERSION = table(VERSION_TABLE, column("version_num", String))

# The revision a database made before Alembic is at, by its schema version. Version 3 came in two
# shapes: the kill switch's table arrived without a bump (the old code created missing tables on
# every start), so its presence decides between 0001 and 0002. Version 4 is stamped at 0003
# whether or not it has the decisions index that 0004 adds (if it is not there already).
_V3_WITHOUT_KILL_SWITCH: Final = "0001"
_V3: Final = "0002"
_V4: Final = "0003"
_KILL_SWITCH_TABLE: Final = "revoked_agents"

# alembic's ``context`` and ``op`` are module-wide proxies: one migration at a time per process.
_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True, slots=True)
class Revision:
    """One revision of tether's schema: its id and the first line of its docstring."""

    id: str
    title: str


@dataclass(frozen=True, slots=True)
class SchemaState:
    """A database's schema against this tether's revisions."""

    revision: str | None
    """The revision the database is at; ``None`` when it has no tether tables yet."""
    head: str
    """The revision this tether writes."""
    pending: tuple[Revision, ...]
    """The revisions to apply, oldest first."""
    legacy_version: int | None = None
    """``tether_meta.schema_version`` of a database made before Alembic (not stamped yet)."""

    @property
    def up_to_date(self) -> bool:
        """At the head and stamped: opening it runs no DDL."""
        return not self.pending and self.legacy_version is None

    def describe(self) -> str:
        """The revision in words, for ``tether db``."""
        if self.revision is None:
            return "empty (no tether tables)"
        if self.legacy_version is not None:
            return (
                f"{self.revision} (schema version {self.legacy_version}, made before tether "
                "used Alembic: not stamped yet)"
            )
        return self.revision


@dataclass(frozen=True, slots=True)
class SchemaUpgrade:
    """What :func:`upgrade` did."""

    before: SchemaState
    after: SchemaState

    @property
    def applied(self) -> tuple[Revision, ...]:
        return self.before.pending


def head() -> str:
    """The revision this tether writes: the last of its revision scripts."""
    current = _script().get_current_head()
    if current is None:  # pragma: no cover - the package ships its revisions
        raise ConfigurationError("tether's schema migrations are missing from its package")
    return current


def schema_state(conn: Connection) -> SchemaState:
    """Where the database on ``conn`` stands. Reads only; raises ``ConfigurationError`` for a
    database this tether cannot use (a newer tether's, or an unknown schema version)."""
    insp = inspect(conn)
    if insp.has_table(VERSION_TABLE):
        found = [str(v) for v in conn.execute(select(_VERSION.c.version_num)).scalars()]
        if found == [SCHEMA_REVISION]:
            # Current: the usual start, answered without loading Alembic (a fifth of a second).
            return SchemaState(SCHEMA_REVISION, SCHEMA_REVISION, ())
        if len(found) != 1 or found[0] not in _known():
            raise _newer(", ".join(repr(v) for v in found) or "none")
        return _state(found[0])
    if not insp.has_table(meta.name):
        return _state(None)
    version = conn.execute(
        select(meta.c.value).where(meta.c.key == SCHEMA_VERSION_KEY)
    ).scalar_one_or_none()
    legacy = _legacy_version(version)
    return _state(_legacy_revision(legacy, insp.has_table(_KILL_SWITCH_TABLE)), legacy)


def upgrade(conn: Connection) -> SchemaUpgrade:
    """Bring the database on ``conn`` to :func:`head` inside the caller's open transaction,
    which the caller serializes across replicas. Refuses what :func:`schema_state` refuses."""
    before = schema_state(conn)
    if before.up_to_date:
        return SchemaUpgrade(before, before)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = conn
    with _ONE_AT_A_TIME:
        if before.legacy_version is not None and before.revision is not None:
            command.stamp(config, before.revision)
        command.upgrade(config, before.head)
    after = schema_state(conn)
    if not after.up_to_date:  # pragma: no cover - alembic applied every pending revision
        raise RuntimeError(f"the schema upgrade stopped at {after.revision}, short of the head")
    return SchemaUpgrade(before, after)


# -- helpers -------------------------------------------------------------------------------------


@cache
def _script() -> ScriptDirectory:
    # Imported here: a current database is recognised without Alembic (see schema_state).
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


@cache
def _known() -> frozenset[str]:
    return frozenset(script.revision for script in _script().walk_revisions())


def _state(revision: str | None, legacy_version: int | None = None) -> SchemaState:
    target = head()
    lower = "base" if revision is None else revision
    pending = tuple(
        Revision(script.revision, " ".join((script.doc or "").split()).rstrip("."))
        for script in reversed(list(_script().iterate_revisions(target, lower)))
    )
    return SchemaState(revision, target, pending, legacy_version)


def _newer(found: str) -> ConfigurationError:
    return ConfigurationError(
        f"the database was written by a newer tether (schema revision {found}; this one knows "
        f"up to {head()!r}); upgrade tether or use another data directory"
    )


def _legacy_version(found: str | None) -> int:
    """The schema version of a database made before Alembic, if this tether can adopt it."""
    try:
        version = -1 if found is None else int(found)
    except ValueError:
        version = -1
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"the database was written by a newer tether (schema version {version}; this one "
            f"knows up to {SCHEMA_VERSION}); upgrade tether or use another data directory"
        )
    if version not in (3, 4):
        raise ConfigurationError(
            f"the database has schema version {found!r}, which this tether cannot use "
            f"(it writes version {SCHEMA_VERSION}); use another data directory"
        )
    return version


def _legacy_revision(version: int, has_kill_switch: bool) -> str:
    if version == 4:
        return _V4
    return _V3 if has_kill_switch else _V3_WITHOUT_KILL_SWITCH


__all__ = [
    "MIGRATIONS",
    "VERSION_TABLE",
    "Revision",
    "SchemaState",
    "SchemaUpgrade",
    "head",
    "schema_state",
    "upgrade",
]

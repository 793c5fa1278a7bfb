"""Say which rule of the schema a refused write broke, from the driver's constraint error.

A write the database refuses for a constraint (``IntegrityError``) is never an outage, and not
always an id reused: the error's own code tells which rule it was. PostgreSQL gives a SQLSTATE
(``23505`` unique, ``23503`` foreign key, ``23502`` not null, ``23514`` check) and the
constraint's name; SQLite an extended result code (``SQLITE_CONSTRAINT_UNIQUE``,
``_PRIMARYKEY``, ``_FOREIGNKEY``, ``_NOTNULL``, ``_CHECK``) and, but for a foreign key, the
table and column. A foreign key checked when the transaction commits (a deferred one) reports
the same way. Messages name the rule and the constraint (schema, never values, SQL or URLs)
and what a person can do about it.
"""

from __future__ import annotations

import re
import sqlite3
from enum import StrEnum
from typing import Final

import psycopg


class Broken(StrEnum):
    UNIQUE = "unique"
    FOREIGN_KEY = "foreign key"
    NOT_NULL = "not null"
    CHECK = "check"
    OTHER = "other"


_SQLSTATE: Final = {
    "23505": Broken.UNIQUE,
    "23503": Broken.FOREIGN_KEY,
    "23502": Broken.NOT_NULL,
    "23514": Broken.CHECK,
}
_SQLITE: Final = {
    "SQLITE_CONSTRAINT_UNIQUE": Broken.UNIQUE,
    "SQLITE_CONSTRAINT_PRIMARYKEY": Broken.UNIQUE,
    "SQLITE_CONSTRAINT_ROWID": Broken.UNIQUE,
    "SQLITE_CONSTRAINT_FOREIGNKEY": Broken.FOREIGN_KEY,
    "SQLITE_CONSTRAINT_NOTNULL": Broken.NOT_NULL,
    "SQLITE_CONSTRAINT_CHECK": Broken.CHECK,
}
#: What SQLite names after "UNIQUE constraint failed: ": table.column pairs, nothing else.
_SQLITE_COLUMNS: Final = re.compile(r"constraint failed: ([A-Za-z0-9_.]+(?:, [A-Za-z0-9_.]+)*)$")
_NAME: Final = re.compile(r"[A-Za-z0-9_.]{1,128}")


def broken_rule(orig: BaseException | None) -> tuple[Broken, str | None]:
    """Which rule ``orig`` (the driver's error) reports, and where (a constraint name, or
    SQLite's ``table.column``), if the driver says."""
    if isinstance(orig, psycopg.Error):
        rule = _SQLSTATE.get(orig.sqlstate or "", Broken.OTHER)
        name = orig.diag.constraint_name
        return rule, name if name is not None and _NAME.fullmatch(name) else None
    if isinstance(orig, sqlite3.Error):
        rule = _SQLITE.get(getattr(orig, "sqlite_errorname", ""), Broken.OTHER)
        found = _SQLITE_COLUMNS.search(str(orig))
        return rule, found.group(1) if found else None
    return Broken.OTHER, None


def integrity_message(action: str, orig: BaseException | None) -> str:
    """A person's message for a write refused by a constraint: which rule, where, what to do."""
    rule, where = broken_rule(orig)
    at = f" ({where})" if where else ""
    match rule:
        case Broken.UNIQUE:
            return (
                f"could not {action}: a row it adds is already there{at}, so nothing was "
                "written. Ids tether makes are random, so this is one request written twice "
                "(retry with the answer's id instead) or a bug: report it with this message"
            )
        case Broken.FOREIGN_KEY:
            return (
                f"could not {action}: it names a row another table does not hold{at} (a task, "
                "grant or decision that was never written, or was removed outside tether), so "
                "nothing was written. Check that the id it names was answered by this "
                "server's store, and run `tether audit verify` if rows may have been deleted"
            )
        case Broken.NOT_NULL | Broken.CHECK:
            return (
                f"could not {action}: a value it writes breaks a {rule.value} rule of the "
                f"schema{at}, so nothing was written. Run `tether db current` to check the "
                "database is at this tether's schema, else report it with this message"
            )
        case Broken.OTHER:
            return (
                f"could not {action}: the database refused it for a constraint{at}, so "
                "nothing was written; report it with this message"
            )


__all__ = ["Broken", "broken_rule", "integrity_message"]

"""Dynamic PostgreSQL roles: one login role per lease, granted exactly the lease's tables.

For a dataset backed by PostgreSQL (configured as dataset → fully qualified tables), a lease gets
a fresh login role that follows the PostgreSQL documentation it cites:

* ``CREATE ROLE … LOGIN PASSWORD … VALID UNTIL …`` (SQL Commands: CREATE ROLE) with a random
  256-bit password and every elevated attribute spelled out as off (NOSUPERUSER, NOCREATEDB,
  NOCREATEROLE, NOINHERIT, NOREPLICATION, NOBYPASSRLS).
* The password is sent as a SCRAM-SHA-256 verifier computed on the client (libpq
  ``PQencryptPasswordConn``, as ``psql``'s ``\\password`` does), never in cleartext: CREATE ROLE's
  own notes warn that a cleartext password may reach the server log.
* ``GRANT`` (SQL Commands: GRANT) of exactly the privileges the lease's actions allow —
  ``read`` → SELECT, ``write`` → INSERT, UPDATE, ``delete`` → DELETE, nothing else — on exactly
  the lease's tables, plus USAGE on their schemas.
* Revocation (Database Roles: Dropping Roles) forbids new logins (``ALTER ROLE … NOLOGIN``), ends
  the role's sessions (``pg_terminate_backend``), then ``DROP OWNED BY`` and ``DROP ROLE``.

``VALID UNTIL`` is checked only when a session authenticates with a password, and only then:
sessions already open outlive it, and ``trust``/``peer``/``cert`` authentication ignores it
(Client Authentication; CREATE ROLE). So ``pg_hba.conf`` must use ``scram-sha-256`` for lease
roles, and :meth:`PostgresRoleIssuer.sweep` ends and drops roles whose time has passed.

Every identifier is quoted by psycopg's ``sql.Identifier``; no SQL is built by string formatting.
Role names derive from the lease id and must be plain lower-case identifiers. The password never
appears in a repr, a log line or an exception message.

The admin role needs CREATEROLE, the right to grant the configured tables (owner or WITH GRANT
OPTION), and ``pg_signal_backend`` membership (or superuser) to end lease sessions. PostgreSQL 14
or later (``pg_terminate_backend`` with a timeout).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, NoReturn

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from tether.core.errors import (
    ConfigurationError,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    Unavailable,
)
from tether.core.lease import LeaseId
from tether.core.scope import ActionKind, Scope, is_valid_name

#: The privileges each action kind allows; actions not listed grant nothing in PostgreSQL.
PRIVILEGES: Final[Mapping[ActionKind, tuple[str, ...]]] = {
    ActionKind.READ: ("SELECT",),
    ActionKind.WRITE: ("INSERT", "UPDATE"),
    ActionKind.DELETE: ("DELETE",),
}
_PRIVILEGE_ORDER: Final = ("SELECT", "INSERT", "UPDATE", "DELETE")

#: PostgreSQL truncates identifiers longer than NAMEDATALEN - 1 bytes; refuse them instead.
_MAX_IDENTIFIER_BYTES: Final = 63
_SAFE_ROLE: Final = re.compile(r"^[a-z_][a-z0-9_]*$")
_PLAIN_TABLE: Final = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
#: Connection parameters of the admin DSN a lease's connection string keeps (never user,
#: password, passfile or client keys).
_KEPT_PARAMS: Final = (
    "host",
    "hostaddr",
    "port",
    "dbname",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
)
_TERMINATE_WAIT_MS: Final = 5000


@dataclass(frozen=True, slots=True)
class TableRef:
    """A fully qualified table. Any name PostgreSQL allows, always quoted when used."""

    schema: str
    name: str

    def __post_init__(self) -> None:
        for part in (self.schema, self.name):
            if (
                not isinstance(part, str)
                or not part
                or "\x00" in part
                or len(part.encode("utf-8")) > _MAX_IDENTIFIER_BYTES
            ):
                raise ConfigurationError(
                    "a table's schema and name must be non-empty, at most 63 bytes, without NUL"
                )

    @staticmethod
    def parse(value: str) -> TableRef:
        """Parse ``schema.table`` of plain identifiers; anything else is refused (quote-free
        configuration cannot be misread). Build a :class:`TableRef` directly for other names."""
        match = _PLAIN_TABLE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ConfigurationError(
                "a PostgreSQL table must be given as schema.table of letters, digits and '_'"
            )
        return TableRef(match.group(1), match.group(2))

    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def _table(value: TableRef | str) -> TableRef:
    return value if isinstance(value, TableRef) else TableRef.parse(value)


class PostgresDatasets:
    """Configuration: which tables back each dataset (``{"crm": ["public.customers"]}``)."""

    __slots__ = ("_tables",)

    def __init__(self, mapping: Mapping[str, Sequence[TableRef | str]]) -> None:
        tables: dict[str, tuple[TableRef, ...]] = {}
        for dataset, entries in mapping.items():
            if not isinstance(dataset, str) or not is_valid_name(dataset, 128):
                raise ConfigurationError(
                    "a dataset name must be letters, digits, '.', '_', '-', '/', ':' or '@'"
                )
            if isinstance(entries, str) or not entries:
                raise ConfigurationError(f"dataset {dataset!r} needs a list of tables")
            tables[dataset] = tuple(dict.fromkeys(_table(t) for t in entries))
        self._tables = tables

    def tables_for(self, scope: Scope) -> tuple[TableRef, ...]:
        """Every table of every dataset ``scope`` names; refuses datasets not configured here."""
        if not scope.datasets:
            raise Forbidden(
                f"scope for {scope.tool!r} names no dataset; a PostgreSQL lease covers datasets",
                code=ErrorCode.NOTHING_GRANTED,
            )
        found: dict[TableRef, None] = {}
        for dataset in sorted(scope.datasets):
            if dataset not in self._tables:
                raise Forbidden(
                    f"dataset {dataset!r} is not backed by PostgreSQL here",
                    code=ErrorCode.NOTHING_GRANTED,
                )
            found.update(dict.fromkeys(self._tables[dataset]))
        return tuple(found)

    def datasets(self) -> frozenset[str]:
        return frozenset(self._tables)


def privileges_for(scope: Scope) -> tuple[str, ...]:
    """The table privileges ``scope``'s actions allow, in a fixed order."""
    allowed = {p for action in scope.actions for p in PRIVILEGES.get(action, ())}
    return tuple(p for p in _PRIVILEGE_ORDER if p in allowed)


@dataclass(frozen=True, slots=True)
class PostgresCredential:
    """A lease's login. The password shows only through :meth:`reveal_conninfo`."""

    lease_id: LeaseId
    role: str
    valid_until: datetime
    tables: tuple[TableRef, ...]
    privileges: tuple[str, ...]
    _params: tuple[tuple[str, str], ...] = field(repr=False)
    _password: str = field(repr=False)

    def reveal_conninfo(self) -> str:
        """The libpq connection string, password included: call it only to hand it over."""
        return make_conninfo("", **dict(self._params), user=self.role, password=self._password)

    def __repr__(self) -> str:
        return (
            f"PostgresCredential(lease_id={self.lease_id!r}, role={self.role!r}, "
            f"valid_until={self.valid_until.isoformat()!r}, password='**********')"
        )

    def __str__(self) -> str:
        return self.__repr__()

    def __reduce__(self) -> NoReturn:
        raise TypeError("a PostgresCredential cannot be pickled")


def new_password() -> str:
    """256 random bits, URL-safe: no quoting problems in a connection string."""
    return secrets.token_urlsafe(32)


class PostgresUnavailable(Unavailable):
    """PostgreSQL could not be reached or failed: no credential was issued (fail closed)."""


def role_prefix_problem(prefix: str) -> str | None:
    """What is wrong with a lease roles' name prefix, or ``None`` when it is safe."""
    if not _SAFE_ROLE.fullmatch(prefix) or len(prefix) > 32:
        return "must be lower-case letters, digits and '_' (at most 32)"
    if prefix.startswith("pg_"):
        return "must not start with pg_ (role names PostgreSQL reserves)"
    return None


class PostgresRoleIssuer:
    """Creates, revokes and sweeps lease roles through an admin connection."""

    def __init__(
        self,
        admin_dsn: str,
        *,
        role_prefix: str = "tether_l_",
        connect_timeout: int = 5,
        password_source: Callable[[], str] = new_password,
    ) -> None:
        why = role_prefix_problem(role_prefix)
        if why is not None:
            raise ConfigurationError(f"role_prefix {why}")
        try:
            params = conninfo_to_dict(admin_dsn)
        except psycopg.Error as exc:
            raise ConfigurationError("the PostgreSQL admin DSN is not a valid conninfo") from exc
        self._admin_dsn = admin_dsn
        self._prefix = role_prefix
        self._timeout = connect_timeout
        self._new_password = password_source
        self._params = tuple(
            (name, str(params[name])) for name in _KEPT_PARAMS if params.get(name) is not None
        )
        self._where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"

    def role_name(self, lease_id: str) -> str:
        """The role a lease's credential logs in as; refuses ids that are not plain names."""
        role = f"{self._prefix}{lease_id}"
        if (
            not isinstance(lease_id, str)
            or not lease_id
            or not _SAFE_ROLE.fullmatch(role)
            or len(role) > _MAX_IDENTIFIER_BYTES
        ):
            raise InvalidRequest(
                "a lease id for PostgreSQL must be lower-case letters, digits and '_' "
                f"(role name at most {_MAX_IDENTIFIER_BYTES} bytes)",
                code=ErrorCode.INVALID_FIELD,
            )
        return role

    def issue(
        self,
        lease_id: LeaseId,
        scope: Scope,
        tables: Iterable[TableRef | str],
        valid_until: datetime,
    ) -> PostgresCredential:
        """Create the lease's role with exactly ``scope``'s privileges on ``tables``.

        All in one transaction: on any failure no role exists afterwards. Raises
        ``InvalidRequest`` for bad input, ``Forbidden`` when the scope allows nothing PostgreSQL
        can grant, ``ConfigurationError`` for a missing table or an admin lacking rights, and
        :class:`PostgresUnavailable` when PostgreSQL cannot be used.
        """
        role = self.role_name(lease_id)
        targets = tuple(dict.fromkeys(_table(t) for t in tables))
        if not targets:
            raise InvalidRequest("a PostgreSQL lease needs at least one table")
        privileges = privileges_for(scope)
        if not privileges:
            raise Forbidden(
                f"scope for {scope.tool!r} allows no action PostgreSQL can grant "
                "(read, write or delete)",
                code=ErrorCode.NOTHING_GRANTED,
            )
        if valid_until.tzinfo is None or valid_until.utcoffset() is None:
            raise InvalidRequest("valid_until must be timezone-aware")
        until = valid_until.astimezone(UTC)
        password = self._new_password()
        schemas = tuple(dict.fromkeys(t.schema for t in targets))
        try:
            with self._connect() as conn, conn.transaction():
                verifier = conn.pgconn.encrypt_password(
                    password.encode(), role.encode(), b"scram-sha-256"
                )
                conn.execute(
                    sql.SQL(
                        "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                        "NOINHERIT NOREPLICATION NOBYPASSRLS PASSWORD {} VALID UNTIL {}"
                    ).format(
                        sql.Identifier(role),
                        sql.Literal(verifier.decode("ascii")),
                        # VALID UNTIL takes a string constant, not an expression.
                        sql.Literal(until.isoformat()),
                    )
                )
                for schema in schemas:
                    conn.execute(
                        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
                            sql.Identifier(schema), sql.Identifier(role)
                        )
                    )
                # INVARIANT: exactly the privileges of the scope's actions, on exactly its tables.
                conn.execute(
                    sql.SQL("GRANT {} ON TABLE {} TO {}").format(
                        sql.SQL(", ").join(sql.SQL(p) for p in privileges),
                        sql.SQL(", ").join(t.identifier() for t in targets),
                        sql.Identifier(role),
                    )
                )
        except pg_errors.DuplicateObject as exc:
            raise InvalidRequest(
                f"lease {lease_id} already has a PostgreSQL role; lease ids are single-use"
            ) from exc
        except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName) as exc:
            raise ConfigurationError(
                "a table configured for this lease does not exist: "
                + ", ".join(str(t) for t in targets)
            ) from exc
        except pg_errors.InsufficientPrivilege as exc:
            raise ConfigurationError(
                "tether's PostgreSQL admin role may not create roles or grant these tables"
            ) from exc
        except psycopg.Error as exc:
            raise PostgresUnavailable(
                f"PostgreSQL at {self._where} failed while issuing lease {lease_id}; "
                "no credential was issued",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
        return PostgresCredential(
            lease_id=lease_id,
            role=role,
            valid_until=until,
            tables=targets,
            privileges=privileges,
            _params=self._params,
            _password=password,
        )

    def revoke(self, lease_id: LeaseId) -> bool:
        """End the lease's sessions and drop its role. Idempotent: ``False`` when there was no
        role. Raises :class:`PostgresUnavailable` when it could not finish (retry later)."""
        role = self.role_name(lease_id)
        try:
            with self._connect() as conn:
                return self._drop(conn, role)
        except pg_errors.DependentObjectsStillExist as exc:
            raise ConfigurationError(
                f"the role of lease {lease_id} holds privileges in another database; "
                "revoke it with the issuer configured for that database"
            ) from exc
        except psycopg.Error as exc:
            raise PostgresUnavailable(
                f"PostgreSQL at {self._where} failed while revoking lease {lease_id}; retry",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc

    def sweep(self, now: datetime, *, limit: int = 1000) -> tuple[LeaseId, ...]:
        """Revoke every lease role whose ``VALID UNTIL`` is at or before ``now``; returns the
        lease ids whose roles were dropped.

        Roles are cluster-wide but grants are per database: give each database's issuer its own
        ``role_prefix``, or roles granted elsewhere are skipped here (after losing LOGIN).
        """
        if now.tzinfo is None or now.utcoffset() is None:
            raise InvalidRequest("now must be timezone-aware")
        dropped: list[LeaseId] = []
        try:
            with self._connect() as conn:
                rows = conn.execute(
                    "SELECT rolname FROM pg_catalog.pg_roles "
                    "WHERE starts_with(rolname, %s) AND rolvaliduntil IS NOT NULL "
                    "AND rolvaliduntil <= %s ORDER BY rolvaliduntil LIMIT %s",
                    (self._prefix, now, limit),
                ).fetchall()
                for (role,) in rows:
                    if not _SAFE_ROLE.fullmatch(role):
                        continue
                    try:
                        if self._drop(conn, role):
                            dropped.append(LeaseId(role[len(self._prefix) :]))
                    except pg_errors.DependentObjectsStillExist:
                        # Roles are cluster-wide: this one was granted in another database, and
                        # that database's issuer drops it. Its logins are already disabled.
                        continue
        except psycopg.Error as exc:
            raise PostgresUnavailable(
                f"PostgreSQL at {self._where} failed while sweeping expired leases; retry",
                code=ErrorCode.STORE_UNAVAILABLE,
            ) from exc
        return tuple(dropped)

    def _drop(self, conn: psycopg.Connection[TupleRow], role: str) -> bool:
        exists = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        if exists is None:
            return False
        ident = sql.Identifier(role)
        try:
            # First forbid new logins, so no session can start between termination and drop.
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(ident))
            # Waits up to the timeout for each session to end (PostgreSQL 14+).
            conn.execute(
                "SELECT pg_terminate_backend(pid, %s) FROM pg_catalog.pg_stat_activity "
                "WHERE usename = %s AND pid <> pg_backend_pid()",
                (_TERMINATE_WAIT_MS, role),
            )
            with conn.transaction():
                # DROP OWNED also revokes every privilege granted to the role in this database.
                conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                conn.execute(sql.SQL("DROP ROLE {}").format(ident))
        except pg_errors.UndefinedObject:
            return False  # revoked concurrently (another replica, or the sweeper): done
        return True

    def _connect(self) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(self._admin_dsn, autocommit=True, connect_timeout=self._timeout)

    def __repr__(self) -> str:
        return f"PostgresRoleIssuer(server={self._where!r}, role_prefix={self._prefix!r})"


__all__ = [
    "PRIVILEGES",
    "PostgresCredential",
    "PostgresDatasets",
    "PostgresRoleIssuer",
    "PostgresUnavailable",
    "TableRef",
    "new_password",
    "privileges_for",
]

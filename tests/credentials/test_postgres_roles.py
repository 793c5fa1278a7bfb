"""Dynamic PostgreSQL roles against a real server: exact grants, revocation, expiry, hostile names."""

from __future__ import annotations

import os
import pickle
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import errors as pg_errors
from psycopg import sql

from pg_server import require_bin_dir
from tether.core.errors import (
    ConfigurationError,
    ErrorCode,
    Forbidden,
    InvalidRequest,
    TetherError,
)
from tether.core.lease import LeaseId, new_lease_id
from tether.core.scope import Scope
from tether.credentials.postgres import (
    PostgresCredential,
    PostgresDatasets,
    PostgresRoleIssuer,
    PostgresUnavailable,
    TableRef,
    privileges_for,
)

from .conftest import HOSTILE_TABLE, Database

CUSTOMERS = TableRef("crm", "customers")
NOTES = TableRef("crm", "notes")
INVOICES = TableRef("billing", "invoices")


def lease_id() -> LeaseId:
    return new_lease_id(os.urandom(16))


def scope(*actions: str, datasets: tuple[str, ...] = ("crm",)) -> Scope:
    return Scope.of("crm.query", actions, datasets)


def soon(seconds: float = 300) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def login(cred: PostgresCredential) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(cred.reveal_conninfo(), autocommit=True)


def server_now(db: Database) -> datetime:
    with db.admin() as admin:
        row = admin.execute("SELECT now()").fetchone()
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


def role_exists(db: Database, role: str) -> bool:
    with db.admin() as admin:
        return (
            admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            is not None
        )


# -- exact privileges ---------------------------------------------------------------------------


def test_a_read_lease_can_select_its_table_and_nothing_else(pg_db: Database) -> None:
    cred = pg_db.issuer().issue(lease_id(), scope("read"), [CUSTOMERS], soon())
    with login(cred) as conn:
        names = conn.execute("SELECT name FROM crm.customers ORDER BY id").fetchall()
        assert names == [("ada",), ("bob",)]
        for statement in (
            "INSERT INTO crm.customers VALUES (3, 'eve')",
            "UPDATE crm.customers SET name = 'eve'",
            "DELETE FROM crm.customers",
            "TRUNCATE crm.customers",
            "SELECT * FROM crm.notes",  # same schema, another table
            "SELECT * FROM billing.invoices",  # another schema
            "CREATE TABLE crm.mine (id int)",
        ):
            with pytest.raises(pg_errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_write_lease_can_insert_and_update_but_not_delete(pg_db: Database) -> None:
    cred = pg_db.issuer().issue(lease_id(), scope("write"), ["crm.customers"], soon())
    with login(cred) as conn:
        conn.execute("INSERT INTO crm.customers VALUES (3, 'eve')")
        conn.execute("UPDATE crm.customers SET name = 'carol'")  # no WHERE: needs no SELECT
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("DELETE FROM crm.customers WHERE id = 3")
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM crm.customers")
    with pg_db.admin() as admin:
        assert admin.execute(
            "SELECT count(*) FROM crm.customers WHERE name = 'carol'"
        ).fetchone() == (3,)


def test_grants_are_exactly_the_scope_s_privileges_on_exactly_its_tables(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    cred = issuer.issue(
        lease_id(), scope("read", "write", "delete", "send"), [CUSTOMERS, INVOICES], soon()
    )
    with pg_db.admin() as admin:
        grants = admin.execute(
            "SELECT table_schema, table_name, privilege_type "
            "FROM information_schema.role_table_grants WHERE grantee = %s",
            (cred.role,),
        ).fetchall()
        attrs = admin.execute(
            "SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
            "rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
            (cred.role,),
        ).fetchone()
        schemas = admin.execute(
            "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'USAGE') "
            "AND nspname IN ('crm', 'billing')",
            (cred.role,),
        ).fetchall()
    expected = {
        (t.schema, t.name, p)
        for t in (CUSTOMERS, INVOICES)
        for p in ("SELECT", "INSERT", "UPDATE", "DELETE")
    }
    assert set(grants) == expected
    assert attrs == (False, False, False, False, True, False, False)
    assert {s for (s,) in schemas} == {"crm", "billing"}
    assert cred.privileges == ("SELECT", "INSERT", "UPDATE", "DELETE")


def test_the_connection_string_logs_in_as_the_lease_role(pg_db: Database) -> None:
    cred = pg_db.issuer().issue(lease_id(), scope("read"), [CUSTOMERS], soon())
    with login(cred) as conn:
        row = conn.execute("SELECT current_user, session_user, current_database()").fetchone()
    assert row == (cred.role, cred.role, pg_db.name)
    assert cred.role == f"{pg_db.role_prefix}{cred.lease_id}"


def test_scopes_postgres_cannot_grant_are_refused(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    lid = lease_id()
    with pytest.raises(Forbidden) as caught:
        issuer.issue(lid, scope("send", "execute", "spend"), [CUSTOMERS], soon())
    assert caught.value.code is ErrorCode.NOTHING_GRANTED
    assert not role_exists(pg_db, issuer.role_name(lid))
    assert privileges_for(scope("read", "spend")) == ("SELECT",)


def test_a_missing_table_leaves_no_role_behind(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    lid = lease_id()
    with pytest.raises(ConfigurationError):
        issuer.issue(lid, scope("read"), [CUSTOMERS, TableRef("crm", "nope")], soon())
    assert not role_exists(pg_db, issuer.role_name(lid))  # one transaction: all or nothing


def test_a_lease_id_is_single_use(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    lid = lease_id()
    issuer.issue(lid, scope("read"), [CUSTOMERS], soon())
    with pytest.raises(InvalidRequest):
        issuer.issue(lid, scope("read", "write"), [CUSTOMERS], soon())


# -- revocation ---------------------------------------------------------------------------------


def test_revoke_ends_open_sessions_and_refuses_new_logins(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    cred = issuer.issue(lease_id(), scope("read"), [CUSTOMERS], soon())
    session = login(cred)
    assert session.execute("SELECT count(*) FROM crm.customers").fetchone() == (2,)

    assert issuer.revoke(cred.lease_id) is True

    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT count(*) FROM crm.customers")
    session.close()
    with pytest.raises(psycopg.OperationalError):
        login(cred)
    assert not role_exists(pg_db, cred.role)


def test_revoke_is_idempotent(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    cred = issuer.issue(lease_id(), scope("read"), [CUSTOMERS], soon())
    assert issuer.revoke(cred.lease_id) is True
    assert issuer.revoke(cred.lease_id) is False
    assert issuer.revoke(lease_id()) is False  # never issued


# -- expiry -------------------------------------------------------------------------------------


def test_a_role_past_valid_until_cannot_log_in_and_is_swept(pg_db: Database) -> None:
    issuer = pg_db.issuer()
    now = server_now(pg_db)
    expired = issuer.issue(lease_id(), scope("read"), [CUSTOMERS], now - timedelta(seconds=5))
    live = issuer.issue(lease_id(), scope("read"), [CUSTOMERS], now + timedelta(minutes=5))

    with pytest.raises(psycopg.OperationalError):
        login(expired)
    with login(live) as conn:
        conn.execute("SELECT 1")

    assert issuer.sweep(now) == (expired.lease_id,)
    assert not role_exists(pg_db, expired.role)
    assert role_exists(pg_db, live.role)
    assert issuer.sweep(now) == ()  # idempotent


def test_sweep_ends_sessions_that_outlived_valid_until(pg_db: Database) -> None:
    # PostgreSQL checks VALID UNTIL only at login: a session opened while the role was valid
    # outlives it. Move VALID UNTIL into the past under the open session instead of waiting.
    issuer = pg_db.issuer()
    cred = issuer.issue(lease_id(), scope("read"), [CUSTOMERS], soon())
    session = login(cred)
    until = server_now(pg_db) - timedelta(seconds=1)
    with pg_db.admin() as admin:
        admin.execute(
            sql.SQL("ALTER ROLE {} VALID UNTIL {}").format(
                sql.Identifier(cred.role), sql.Literal(until.isoformat())
            )
        )
    assert server_now(pg_db) > until

    with pytest.raises(psycopg.OperationalError):
        login(cred)
    session.execute("SELECT 1")  # still open: VALID UNTIL does not end sessions

    assert issuer.sweep(server_now(pg_db)) == (cred.lease_id,)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()


def test_sweep_leaves_roles_without_its_prefix_alone(pg_db: Database) -> None:
    other = "u" + pg_db.role_prefix + "x"  # expired, but not this issuer's prefix
    with pg_db.admin() as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN VALID UNTIL '2000-01-01'").format(sql.Identifier(other))
        )
    pg_db.issuer().sweep(datetime.now(UTC))
    assert role_exists(pg_db, other)


# -- hostile names ------------------------------------------------------------------------------


def test_hostile_table_names_are_refused_in_configuration() -> None:
    for raw in (HOSTILE_TABLE, f"public.{HOSTILE_TABLE}", 'crm."customers"', "customers", "a.b.c"):
        with pytest.raises(ConfigurationError):
            TableRef.parse(raw)
    with pytest.raises(ConfigurationError):
        PostgresDatasets({'crm"; --': ["crm.customers"]})
    with pytest.raises(ConfigurationError):
        PostgresDatasets({"crm": [HOSTILE_TABLE]})
    with pytest.raises(ConfigurationError):
        TableRef("public", "x" * 64)  # PostgreSQL would silently truncate it


def test_hostile_table_names_given_as_tableref_are_quoted_not_executed(pg_db: Database) -> None:
    cred = pg_db.issuer().issue(
        lease_id(), scope("read"), [TableRef("public", HOSTILE_TABLE)], soon()
    )
    with login(cred) as conn:
        rows = conn.execute(
            sql.SQL("SELECT id FROM public.{}").format(sql.Identifier(HOSTILE_TABLE))
        ).fetchall()
        assert rows == [(1,)]
        with pytest.raises(pg_errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM public.y")
    with pg_db.admin() as admin:
        assert admin.execute("SELECT id FROM public.y").fetchall() == [(7,)]  # y survived


@pytest.mark.parametrize(
    "bad",
    ['lse_x"; DROP ROLE postgres; --', "lse_'quoted'", "LSE_UPPER", "", "a b", "x" * 60, "é"],
)
def test_hostile_lease_ids_are_refused(pg_db: Database, bad: str) -> None:
    with pytest.raises(InvalidRequest):
        pg_db.issuer().issue(LeaseId(bad), scope("read"), [CUSTOMERS], soon())
    with pytest.raises(InvalidRequest):
        pg_db.issuer().revoke(LeaseId(bad))


@pytest.mark.parametrize("prefix", ['t"; --', "Upper_", "pg_lease_", "", "a" * 40])
def test_unsafe_role_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError):
        PostgresRoleIssuer("host=127.0.0.1", role_prefix=prefix)


# -- secrets stay secret ------------------------------------------------------------------------

CANARY = "canary-0123456789-abcdefghijklmnopqrstuvwxyz"


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_the_password_never_appears_in_repr_str_errors_or_the_server_log(pg_db: Database) -> None:
    issuer = PostgresRoleIssuer(
        pg_db.admin_dsn, role_prefix=pg_db.role_prefix, password_source=lambda: CANARY
    )
    lid = lease_id()
    cred = issuer.issue(lid, scope("read"), [CUSTOMERS], soon())
    assert CANARY in cred.reveal_conninfo()  # revealing is explicit, and works
    for shown in (repr(cred), str(cred), f"{cred}", f"{cred!r}", repr(issuer)):
        assert CANARY not in shown
        assert "**********" in shown or "PostgresRoleIssuer" in shown
    with pytest.raises(TypeError):
        pickle.dumps(cred)

    with pytest.raises(InvalidRequest) as duplicate:
        issuer.issue(lid, scope("read"), [CUSTOMERS], soon())
    assert CANARY not in _exception_text(duplicate.value)
    with pytest.raises(ConfigurationError) as missing:
        issuer.issue(lease_id(), scope("read"), [TableRef("crm", "nope")], soon())
    assert CANARY not in _exception_text(missing.value)

    # Only a SCRAM verifier reached the server: not in its log (it logs every statement here),
    # not in its catalog.
    assert "CREATE ROLE" in pg_db.server.log_text()
    assert CANARY not in pg_db.server.log_text()
    with pg_db.admin() as admin:
        stored = admin.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (cred.role,)
        ).fetchone()
    assert stored is not None and str(stored[0]).startswith("SCRAM-SHA-256$")


def test_postgres_down_is_a_clear_unavailable_error_without_the_admin_password(
    pg_db: Database,
) -> None:
    dead = pg_db.server.dsn(pg_db.name, port="1", connect_timeout="2")
    issuer = PostgresRoleIssuer(dead, role_prefix=pg_db.role_prefix)
    for attempt in (
        lambda: issuer.issue(lease_id(), scope("read"), [CUSTOMERS], soon()),
        lambda: issuer.revoke(lease_id()),
        lambda: issuer.sweep(datetime.now(UTC)),
    ):
        with pytest.raises(PostgresUnavailable) as caught:
            attempt()
        assert caught.value.code is ErrorCode.STORE_UNAVAILABLE
        assert isinstance(caught.value, TetherError)
        assert pg_db.server.password not in _exception_text(caught.value)
    assert pg_db.server.password not in repr(issuer)


# -- configuration ------------------------------------------------------------------------------


def test_datasets_map_scopes_to_their_tables() -> None:
    datasets = PostgresDatasets(
        {"crm": ["crm.customers", "crm.notes"], "billing": [INVOICES], "dup": ["crm.notes"]}
    )
    assert datasets.tables_for(scope("read", datasets=("crm",))) == (CUSTOMERS, NOTES)
    assert datasets.tables_for(scope("read", datasets=("crm", "dup"))) == (CUSTOMERS, NOTES)
    with pytest.raises(Forbidden):
        datasets.tables_for(scope("read", datasets=("hr",)))
    with pytest.raises(Forbidden):
        datasets.tables_for(scope("read", datasets=()))


def test_a_missing_postgres_installation_fails_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"ensure-postgres\.sh"):
        require_bin_dir(tmp_path)

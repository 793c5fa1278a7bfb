"""Fixtures for the credential issuer tests: a real PostgreSQL server and a fresh database each."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from pg_server import PostgresServer, postgres_server
from tether.credentials.postgres import PostgresRoleIssuer

__all__ = ["postgres_server"]

TEMPLATE_DB = "tether_tpl"
HOSTILE_TABLE = 'x"; DROP TABLE y; --'

_SCHEMA = [
    "CREATE SCHEMA crm",
    "CREATE TABLE crm.customers (id int PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO crm.customers VALUES (1, 'ada'), (2, 'bob')",
    "CREATE TABLE crm.notes (id int PRIMARY KEY, body text NOT NULL)",
    "INSERT INTO crm.notes VALUES (1, 'private')",
    "CREATE SCHEMA billing",
    "CREATE TABLE billing.invoices (id int PRIMARY KEY, amount int NOT NULL)",
    "INSERT INTO billing.invoices VALUES (1, 100)",
    "CREATE TABLE public.y (id int)",
    "INSERT INTO public.y VALUES (7)",
]


@pytest.fixture(scope="session")
def pg_template(postgres_server: PostgresServer) -> str:
    """A template database with the tables every test starts from."""
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    with psycopg.connect(postgres_server.dsn(TEMPLATE_DB), autocommit=True) as conn:
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(
            sql.SQL("CREATE TABLE public.{} (id int)").format(sql.Identifier(HOSTILE_TABLE))
        )
        conn.execute(
            sql.SQL("INSERT INTO public.{} VALUES (1)").format(sql.Identifier(HOSTILE_TABLE))
        )
    return TEMPLATE_DB


@dataclass(frozen=True)
class Database:
    server: PostgresServer
    name: str
    role_prefix: str

    @property
    def admin_dsn(self) -> str:
        return self.server.dsn(self.name)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.admin_dsn, autocommit=True)

    def issuer(self) -> PostgresRoleIssuer:
        return PostgresRoleIssuer(self.admin_dsn, role_prefix=self.role_prefix)


@pytest.fixture
def pg_db(postgres_server: PostgresServer, pg_template: str) -> Iterator[Database]:
    """A fresh database copied from the template, and a role prefix no other test uses (roles
    are cluster-wide, so each test sweeps only its own)."""
    tag = os.urandom(4).hex()
    name = f"t_{tag}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(pg_template)
            )
        )
    yield Database(server=postgres_server, name=name, role_prefix=f"t{tag}_")

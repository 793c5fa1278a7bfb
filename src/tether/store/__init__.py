"""The SQL store adapter: tasks, grants, decisions, effects, approvals and the audit chain in one
database.

One implementation, :class:`SqlStore`, serves SQLite (the embedded default) and PostgreSQL (several
replicas on one database) through the same SQLAlchemy Core statements. It implements
:class:`tether.service.ports.Store`; one contract suite (``tests/store``) runs against both.

Running on PostgreSQL
---------------------

Open the store with a URL or a libpq connection string::

    SqlStore("postgresql://tether:secret@db.internal:5432/tether?sslmode=verify-full")
    SqlStore.postgres("host=db.internal dbname=tether user=tether sslmode=verify-full",
                      lock_timeout=timedelta(seconds=5), statement_timeout=timedelta(seconds=10))

``postgresql://``, ``postgres://`` and ``postgresql+psycopg://`` all mean psycopg 3. Query
parameters are libpq's (``sslmode``, ``sslrootcert``, ``target_session_attrs``...); put tether in a
schema of its own with ``options=-csearch_path%3Dtether``. Each session gets ``lock_timeout`` (how
long a writer waits for the chain head), ``statement_timeout``,
``idle_in_transaction_session_timeout`` equal to ``lock_timeout``, at least 1 s (a session
stalled inside its transaction holds the head no longer than others wait for it), TCP keepalives and
``READ COMMITTED`` whatever the server's default; the pool keeps ``pool_size`` connections (up to
twice that under load), pings each before use and recycles it after 30 minutes, so a replica
picks a restarted server up by itself. Plan ``max_connections`` for replicas x 2 x ``pool_size``
plus headroom. The session settings travel as startup ``options``; behind a pooler that drops
those (PgBouncer), set them on the role instead (``ALTER ROLE tether SET lock_timeout = '5s'``,
and the same for the others).

Keep ``fsync`` and ``synchronous_commit`` on (the defaults): a decision is answered only after its
audit record committed, so the chain is exactly as durable as the server's commit.

When the server cannot be reached, every method raises ``Unavailable`` (``STORE_UNAVAILABLE``, or
``AUDIT_UNAVAILABLE`` for the audit methods), as on SQLite, and the service denies. Nothing waits
unbounded: connecting is bounded by ``connect_timeout``, a lock wait by ``lock_timeout``, a
statement by ``statement_timeout``, a dead peer by keepalives, and a server that accepts
connections but stops answering (frozen, stalled storage) by a client-side deadline of
``lock_timeout + statement_timeout`` plus a second (:mod:`tether.store.watchdog`). Messages name
the failure (``cannot connect``, ``refused tether's credentials``,
``lock_timeout``, ``SQLSTATE 42501``...), never the URL, host, user or password, and ``repr`` shows
only the backend.

Schema. The tables come from Alembic revisions (:mod:`tether.store.migrations`, driven by
:mod:`tether.store.migrate`): opening a store creates them on first start and applies pending
migrations on later ones, in one transaction. Several replicas may start at once: a
transaction-scoped advisory lock lets one create or migrate the schema while the others wait and
then find it current. A database whose revision this tether does not know (a newer tether's) is
refused with ``ConfigurationError``. ``tether db current`` and ``tether db upgrade`` show and apply
migrations without starting a server (``SqlStore(url, migrate=False)``, then
:meth:`SqlStore.schema_state` or :meth:`SqlStore.upgrade_schema`).

Privileges. The simple way: a role that owns the database, or has ``CREATE`` on the schema;
tether creates and migrates its tables itself.

The hardened way, recommended for replicas: an owner role creates or migrates the schema (``tether
db upgrade --store-url OWNER_URL``, before starting each tether version that brings a migration),
and the replicas connect as a runtime role with ``USAGE`` on the schema and exactly
:data:`RUNTIME_PRIVILEGES`. On a current schema a replica runs no DDL; on one with migrations
pending it fails closed (``SQLSTATE 42501``) and says to run ``tether db upgrade`` as the owner::

    GRANT SELECT ON tether_meta, tether_alembic_version TO tether_rt;
    GRANT SELECT, UPDATE ON audit_head TO tether_rt;      -- UPDATE also for SELECT ... FOR UPDATE
    GRANT SELECT, INSERT ON audit, audit_checkpoints, decisions, effects,
        observations TO tether_rt;
    GRANT SELECT, INSERT, UPDATE ON tasks, grants, approvals, breakglass, budget_holds,
        revoked_agents, leases TO tether_rt;

tether never deletes a row nor changes an audit record, so the runtime role has no ``DELETE``,
``TRUNCATE`` or ``UPDATE`` on ``audit``: rewriting history takes the owner's credentials, not a
replica's (``tether audit verify`` still catches an owner who does).

One chain, locked head: why, for replicas
-----------------------------------------

The audit log stays *one* hash chain across all replicas. Every mutation, on any replica, is one
transaction that first locks the single ``audit_head`` row (``SELECT ... FOR UPDATE``), makes its
change, seals its record after the head and moves the head, and commits once. We chose this over
per-replica chains with signed anchors because:

- The invariants need a serialization point anyway. "An approval is used at most once", "one
  effect per decision" and approvers' votes are read-check-write steps that must not interleave
  across replicas. The head lock is that point for all of them; per-replica chains would still need
  a lock for each, so they would save little contention while adding a second mechanism.
- No gap and no fork follow from the structure, and a reader proves it in one pass: ``seq`` is the
  primary key, dense from 1; the head moves only from the value the writer read, in the same commit
  as the record; ``tether audit verify`` checks every link in ``seq`` order and the last against the
  stored head. Per-replica chains need a key per replica (replicas come and go), anchors signed and
  cross-referenced so a whole chain or its tail since the last anchor cannot vanish unnoticed, and a
  merge rule to recover one timeline.
- The change and its record commit together. A replica killed mid-transaction leaves nothing
  behind (the server rolls back); the head never points past the last record.
- One total order says what happened before what across replicas, which an incident review needs.

The cost: writers on all replicas serialize on one row for the span of their transaction (a few
statements and the commit). Locks are always taken head first, so writers cannot deadlock. Reads
take no lock. A replica frozen mid-transaction holds the head at most ``statement_timeout`` (then
the server ends its session), and meanwhile other writers give up after ``lock_timeout`` with
``Unavailable``: they deny rather than wait forever. On loopback with ``fsync`` off, the test
server takes roughly 1,000 appends/s, from one writer or from four threads on two replicas alike;
with a network round trip and a durable commit, expect hundreds per second in total. If that
ceiling is reached, the next step is to shorten the time the lock is held (fewer round trips per
transaction), not to split the chain.
"""

from tether.store.schema import RUNTIME_PRIVILEGES, SCHEMA_VERSION
from tether.store.sql import SqlStore

__all__ = ["RUNTIME_PRIVILEGES", "SCHEMA_VERSION", "SqlStore"]

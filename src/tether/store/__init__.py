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
    GRANT SELECT, INSERT, UPDATE ON audit_head TO tether_rt;  -- UPDATE for SELECT ... FOR UPDATE
    GRANT SELECT, INSERT ON audit, audit_checkpoints, decisions, effects,
        observations, gateway_events TO tether_rt;
    GRANT SELECT, INSERT, UPDATE ON tasks, grants, approvals, breakglass, budget_holds,
        revoked_agents, leases TO tether_rt;

tether never deletes a row nor changes an audit record, so the runtime role has no ``DELETE``,
``TRUNCATE`` or ``UPDATE`` on ``audit``: rewriting history takes the owner's credentials, not a
replica's (``tether audit verify`` still catches an owner who does).

One chain per replica, one signature over all: why, for replicas
-----------------------------------------------------------------

Until schema 10 the audit log was one hash chain whose single head row every mutation of every
replica locked, so replicas added no decision throughput (two PostgreSQL replicas measured below
one SQLite process) and one replica frozen while holding the head stalled every other. The log is
now *partitioned* (:mod:`tether.core.audit`): each replica appends to a chain of its own, named by
its replica id (``--replica-id``, ``TETHER_REPLICA_ID``, ``store.replica_id``; the default is
``0`` on SQLite and the host name plus a hash of the data directory's path on PostgreSQL), with
its own ``audit_head`` row and so its own lock. Within a partition nothing changed: ``(partition,
seq)`` is the primary key, dense from 1; the head moves only from the value the writer read, in
the same commit as the record; a change and its record commit together. The chain a store held
before schema 10 is the legacy partition ``0``, its hashes untouched.

- What the single head used to serialize by accident now has its own lock, on the row it checks:
  a budget's "sum, then hold" locks the charged tasks' rows (in task id order, so batches never
  deadlock); a vote or an approval's use locks the approval's (or break-glass request's) row;
  one effect per decision is the unique ``effects.decision_id`` (a second report's insert waits
  for the first and adds nothing); listing a revoked agent is one upsert; checkpoints are stored
  under a transaction-scoped advisory lock. Revocation fans out as before (Redis).
- No gap, fork or reorder inside a partition, and no partition dropped or cut back: a signed
  checkpoint (:mod:`tether.core.checkpoint`, made by any replica) signs every partition's
  (size, head, Merkle root) together, and ``tether audit verify`` checks each partition link by
  link, against its stored head and against every checkpoint, and that checkpoints only grow.
- The order *across* replicas is the order of time (``at``, then partition, then seq:
  :func:`tether.core.partitions.log_order`), as precise as the replicas' clocks; within a
  replica, seq. Nothing relies on a total order across replicas.

Two processes with the same replica id share a partition and take turns on its head: correct,
only slower. A replica frozen mid-transaction now holds only its own partition's head (and the
rows it locked), at most until the server ends its idle session.
"""

from tether.store.schema import RUNTIME_PRIVILEGES, SCHEMA_VERSION
from tether.store.sql import SqlStore

__all__ = ["RUNTIME_PRIVILEGES", "SCHEMA_VERSION", "SqlStore"]

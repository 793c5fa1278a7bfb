"""The SQL store adapter: tasks, grants, decisions, effects and the audit chain in one database.

One implementation, :class:`SqlStore`, serves SQLite (the embedded default) and, through the same
SQLAlchemy Core statements, PostgreSQL. It implements :class:`tether.service.ports.Store`.
"""

from tether.store.schema import SCHEMA_VERSION
from tether.store.sql import SqlStore

__all__ = ["SCHEMA_VERSION", "SqlStore"]

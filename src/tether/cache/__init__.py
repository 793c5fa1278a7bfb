"""A per-replica cache of grants and tasks, kept honest across replicas by Redis.

- :mod:`tether.cache.store`: :class:`CachedStore`, the ``Store`` port with ``get_grant`` and
  ``get_task`` cached; every write that ends or changes a grant or task invalidates after its
  commit, here and on every replica.
- :mod:`tether.cache.fanout`: the Redis side, an invalidation counter and channel, and the
  subscriber thread with its health check.
- :mod:`tether.cache.entries`: the bounded in-process LRU and the bookkeeping that says when it
  may be trusted.

The invariant it keeps (issue 7, DESIGN "Scale-out"): a grant, task or agent revoked on one
replica is refused by every replica on its next call. When Redis is down, unhealthy or behind,
reads go to the database; no Redis URL means no cache at all (:func:`tether.runtime.open_runtime`).
It is an adapter: it imports core and the service's ports, never an entry point.
"""

from tether.cache.entries import DEFAULT_CAPACITY, DEFAULT_MAX_AGE, CacheStats, GrantCache
from tether.cache.fanout import RedisFanout
from tether.cache.store import CachedStore

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_AGE",
    "CacheStats",
    "CachedStore",
    "GrantCache",
    "RedisFanout",
]

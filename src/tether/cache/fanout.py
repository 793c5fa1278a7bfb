"""Revocation fan-out over Redis: publish what a replica changed, hear what the others changed.

One shared counter and one channel per Redis database (``tether:cache:epoch`` and
``tether:cache:invalidate:<db>``; channels are server-wide, so the database number keeps two
deployments on one server apart):

- :meth:`RedisFanout.publish` runs after the database commit. One Lua script increments the
  counter and publishes ``"<epoch> <json>"`` atomically, so events reach every subscriber in epoch
  order. The JSON names the tasks whose rows changed (``{"tasks": [...]}``; their grants go with
  them) or asks for everything to go (``{"all": true}``). When the counter is missing (a
  restarted Redis keeps nothing: tests run it with ``--save ''``) the script starts it at a random
  value, so a replica can never mistake a new sequence for the one it had applied.
- A background thread subscribes, applies each event to the :class:`GrantCache`, and sends a PING
  on the subscription every ``ping_every``. The subscription is *healthy* while the last PONG is
  at most ``stale_after`` old; a reader checks :meth:`RedisFanout.healthy` before anything else.
  On any error, a PONG overdue, or a silent re-subscription (redis-py reconnects on its own and
  events published meanwhile are lost) the thread empties the cache and stops it being used, then
  subscribes again with a back-off; once subscribed it reads the counter and empties the cache
  *again* before it serves from it (:meth:`GrantCache.resync`).

Health is measured with :func:`time.monotonic`, not the service's injected clock: it is the age of
a real socket's last answer, and the injected clock is wall time that tests freeze (a frozen clock
would keep a dead subscription healthy forever) and that NTP may step.

Nothing here raises into a request. A reader that cannot reach Redis reads the database; a writer
that cannot publish logs it and returns (its commit stands; the cache's short max age bounds what
other replicas may still serve, see :mod:`tether.cache.entries`).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Final, Literal

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.exceptions import RedisError
from redis.retry import Retry

from tether.cache.entries import GrantCache
from tether.logs import get_logger

EPOCH_KEY: Final = "tether:cache:epoch"
CHANNEL_PREFIX: Final = "tether:cache:invalidate:"
#: How often the subscription is pinged, and how old its last PONG may be while it counts healthy.
PING_EVERY: Final = 0.1
STALE_AFTER: Final = 0.5
#: Socket timeout for a command (the counter read on a cached read, a publish).
COMMAND_TIMEOUT: Final = 0.25
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 1.0
_PUBLISH_ATTEMPTS: Final = 2
_PING_TOKEN: Final = "tether-fanout"
#: Starting values of a fresh counter are drawn below this (exact in Lua's doubles).
_EPOCH_BASE_BELOW: Final = 2**40

# INVARIANT: events reach subscribers in counter order: increment and publish are one script.
_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('SET', KEYS[1], ARGV[2])
end
local epoch = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], string.format('%d', epoch) .. ' ' .. ARGV[3])
return epoch
"""

log = get_logger("tether.cache")


class _Resubscribed(Exception):
    """The subscription was renewed under us: events may have been lost in between."""


class _Stale(Exception):
    """No PONG for longer than ``stale_after``."""


def parse_event(data: bytes | str) -> tuple[int, tuple[str, ...] | None]:
    """``"<epoch> <json>"`` -> (epoch, task ids or ``None`` for everything). Raises ValueError."""
    text = data.decode() if isinstance(data, bytes) else data
    head, _, body = text.partition(" ")
    epoch = int(head)
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("an invalidation is a JSON object")
    tasks = doc.get("tasks")
    if doc.get("all") is True or not isinstance(tasks, list):
        return epoch, None
    if not all(isinstance(t, str) for t in tasks):
        raise ValueError("task ids are strings")
    return epoch, tuple(tasks)


class RedisFanout:
    """The Redis side of one replica's grant cache: its publisher and its subscriber thread."""

    def __init__(
        self,
        url: str,
        cache: GrantCache,
        *,
        ping_every: float = PING_EVERY,
        stale_after: float = STALE_AFTER,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        """Connect lazily to the Redis ``url`` names (``redis://``, ``rediss://``, ``unix://``);
        call :meth:`start` to subscribe. Raises ``ValueError`` for a URL redis-py cannot use."""
        if not 0 < ping_every < stale_after:
            raise ValueError("ping_every must be positive and shorter than stale_after")
        self._cache = cache
        self._ping_every = ping_every
        self._stale_after = stale_after
        # No retries inside redis-py: a read that fails goes to the database at once, and
        # :meth:`publish` retries by itself (a pooled connection may have died with a restarted
        # server).
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=command_timeout,
            socket_connect_timeout=command_timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        db = self._client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{CHANNEL_PREFIX}{db}"
        self._script = self._client.register_script(_PUBLISH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-cache-fanout", daemon=True)
        self._lock = threading.Lock()
        self._live = False
        self._last_pong = 0.0
        #: What the log last said about the subscription, so an outage is logged once.
        self._reported: Literal["starting", "up", "down"] = "starting"

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"RedisFanout({self.channel}, {'healthy' if self.healthy() else 'down'})"

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop the subscriber thread and close every connection; idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self._client.close()

    # -- readers and writers ---------------------------------------------------------------

    def healthy(self) -> bool:
        """Subscribed, in step, and the last PONG is at most ``stale_after`` old."""
        with self._lock:
            return self._live and time.monotonic() - self._last_pong <= self._stale_after

    def epoch(self) -> int | None:
        """The shared counter now (``None`` when no replica has published since Redis started).
        Raises ``RedisError`` or ``OSError`` when Redis cannot answer."""
        value = self._client.get(EPOCH_KEY)
        if value is None:
            return None
        if not isinstance(value, bytes | str | int):
            raise ValueError("the invalidation counter is not a number")
        return int(value)

    def publish(self, task_ids: Sequence[str] | None) -> bool:
        """Tell every replica these tasks (``None``: everything) changed; False when it could not.
        Call it after the change committed."""
        body = json.dumps({"all": True} if task_ids is None else {"tasks": list(task_ids)})
        base = secrets.randbelow(_EPOCH_BASE_BELOW)
        failure: Exception | None = None
        for _ in range(_PUBLISH_ATTEMPTS):
            try:
                self._script(keys=[EPOCH_KEY], args=[self.channel, base, body])
            except (RedisError, OSError) as error:
                failure = error
                continue
            self._cache.count_publish(True)
            return True
        self._cache.count_publish(False)
        # The commit stands; other replicas drop these entries by max age at the latest.
        log.warning("cache_invalidation_not_published", error_type=type(failure).__name__)
        return False

    # -- the subscriber --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as error:  # whatever broke, the cache is out of step: start over
                if self._reported != "down":
                    log.warning("cache_fanout_down", error_type=type(error).__name__)
                    if self._reported == "up":
                        backoff = _BACKOFF_FIRST
                    self._reported = "down"
            finally:
                self._set_live(False)
                # INVARIANT: while nobody listens, nobody serves: events may be missed now.
                self._cache.desync()
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _listen(self) -> None:
        pubsub: PubSub = self._client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            self._await_subscribed(pubsub)
            # Subscribed before reading the counter: every event after this value reaches us.
            self._cache.resync(self.epoch())
            self._set_live(True, pong=time.monotonic())
            if self._reported != "up":
                log.info("cache_fanout_connected", channel=self.channel)
                self._reported = "up"
            next_ping = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_ping:
                    pubsub.ping(_PING_TOKEN)
                    next_ping = now + self._ping_every
                if now - self._pong() > self._stale_after:
                    raise _Stale()
                message = pubsub.get_message(timeout=self._ping_every)
                if message is not None:
                    self._handle(message)
        finally:
            pubsub.close()

    def _await_subscribed(self, pubsub: PubSub) -> None:
        deadline = time.monotonic() + self._stale_after
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=self._ping_every)
            if message is not None and message.get("type") == "subscribe":
                return
        raise _Stale()

    def _handle(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind == "pong":
            self._set_live(True, pong=time.monotonic())
        elif kind == "message":
            data = message.get("data")
            if not isinstance(data, bytes | str):
                raise ValueError("an invalidation carries text")
            epoch, task_ids = parse_event(data)
            self._cache.apply(epoch, task_ids)
        elif kind == "subscribe":
            raise _Resubscribed()

    def _pong(self) -> float:
        with self._lock:
            return self._last_pong

    def _set_live(self, live: bool, pong: float | None = None) -> None:
        with self._lock:
            self._live = live
            if pong is not None:
                self._last_pong = pong

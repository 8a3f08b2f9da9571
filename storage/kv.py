"""Short-lived shared state (dialogue state, access tokens, rate-limit counters).

Two interchangeable stores with one small interface: ``RedisKV`` when ``HUINONG_REDIS_URL`` is
set, ``DatabaseKV`` otherwise (a table, so several workers on one database still share it).
Values are strings; callers serialise.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
import time
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from .db import session_scope, upsert
from .models import KeyValue, utcnow

log = logging.getLogger(__name__)

#: Seconds between two purges of expired rows by one ``DatabaseKV`` (per process), and the most
#: rows one purge deletes (a purge that deletes that many runs again on the next write).
PURGE_EVERY = 60.0
PURGE_LIMIT = 1000


class KV(Protocol):
    """Optionally also ``get_many(keys)`` and ``set_many(values, *, ttl)``: several at once (see
    ``get_many`` and ``set_many``)."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, *, ttl: int | None = None) -> None: ...
    def delete(self, key: str) -> None: ...
    def incr(self, key: str, *, ttl: int) -> int: ...


def purge_expired(engine: Engine, *, now: dt.datetime | None = None, limit: int = PURGE_LIMIT) -> int:
    """Delete up to ``limit`` rows of the key-value table whose time is up; how many went.

    Without it the table only grows: a dialogue state per villager who ever wrote, a login
    counter per address that ever tried the console.
    """
    now = now or utcnow()
    # Found by a scan (there is no index on expires_at: every write would pay for one), then
    # deleted by key. On SQLite both take the write lock, as every transaction of the engine does;
    # the table holds only live keys once purged, so that is a millisecond or so once a minute.
    with engine.connect() as conn:
        keys = list(conn.execute(select(KeyValue.key).where(
            KeyValue.expires_at.is_not(None), KeyValue.expires_at <= now).limit(limit)).scalars())
    if not keys:
        return 0
    with session_scope(engine) as session:
        return session.execute(delete(KeyValue).where(
            KeyValue.key.in_(keys), KeyValue.expires_at.is_not(None), KeyValue.expires_at <= now)).rowcount or 0


class DatabaseKV:
    """The key-value table. Expired rows read as absent and are deleted about once a minute by
    whichever write comes first (:meth:`maintain`)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._next_purge = 0.0
        self._purging = threading.Lock()

    def maintain(self) -> None:
        """Purge expired rows if :data:`PURGE_EVERY` seconds have passed since the last purge
        (one thread at a time; a failure is logged and tried again at the next interval)."""
        if time.monotonic() < self._next_purge or not self._purging.acquire(blocking=False):
            return
        try:
            self._next_purge = time.monotonic() + PURGE_EVERY
            if purge_expired(self.engine, limit=PURGE_LIMIT) >= PURGE_LIMIT:
                self._next_purge = 0.0  # more left: go on at the next write
        except Exception:
            log.warning("purging expired key-value rows failed; trying again later", exc_info=True)
        finally:
            self._purging.release()

    def get(self, key: str) -> str | None:
        with Session(self.engine) as session:
            row = session.get(KeyValue, key)
            if row is None or (row.expires_at is not None and row.expires_at <= utcnow()):
                return None
            return row.value

    def set(self, key: str, value: str, *, ttl: int | None = None) -> None:
        expires = utcnow() + dt.timedelta(seconds=ttl) if ttl else None
        with session_scope(self.engine) as session:
            row = session.get(KeyValue, key)
            if row is None:
                row = KeyValue(key=key, value=value, expires_at=expires)
            row.value = value
            row.expires_at = expires
            session.add(row)
        self.maintain()

    def delete(self, key: str) -> None:
        with session_scope(self.engine) as session:
            session.execute(delete(KeyValue).where(KeyValue.key == key))

    def incr(self, key: str, *, ttl: int) -> int:
        with session_scope(self.engine) as session:
            row = session.get(KeyValue, key, with_for_update=True)
            now = utcnow()
            if row is None or (row.expires_at is not None and row.expires_at <= now):
                if row is None:
                    row = KeyValue(key=key, value="0")
                row.value = "0"
                row.expires_at = now + dt.timedelta(seconds=ttl)
            row.value = str(int(row.value) + 1)
            session.add(row)
            value = int(row.value)
        self.maintain()
        return value


class RedisKV:
    def __init__(self, url: str, *, prefix: str = "huinong:"):
        import redis

        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=2)
        self.prefix = prefix

    def get(self, key: str) -> str | None:
        return self.client.get(self.prefix + key)

    def set(self, key: str, value: str, *, ttl: int | None = None) -> None:
        self.client.set(self.prefix + key, value, ex=ttl)

    def delete(self, key: str) -> None:
        self.client.delete(self.prefix + key)

    def get_many(self, keys: list[str]) -> list[str | None]:
        """Several ``get`` in one round trip (MGET: the flood path reads a batch's dialogue states)."""
        return self.client.mget([self.prefix + k for k in keys]) if keys else []

    def set_many(self, values: dict[str, str], *, ttl: int | None = None) -> None:
        """Several ``set`` in one round trip (the flood path stores a batch's dialogue states)."""
        pipe = self.client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(self.prefix + key, value, ex=ttl)
        pipe.execute()

    def incr(self, key: str, *, ttl: int) -> int:
        pipe = self.client.pipeline()
        pipe.incr(self.prefix + key)
        pipe.expire(self.prefix + key, ttl, nx=True)
        value, _ = pipe.execute()
        return int(value)


class MemoryKV:
    """Process-local store: tests, single-process tools, and the mini-program's rate-limit
    counters without Redis. Expired entries are dropped when read and, about once a minute, all
    at once (a counter per user and IP and minute would otherwise pile up in every worker)."""

    def __init__(self, *, sweep_every: float = PURGE_EVERY, clock=time.monotonic):
        self._data: dict[str, tuple[str, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sweep_every = sweep_every
        self._next_sweep = clock() + sweep_every

    def _alive(self, key: str, now: float) -> tuple[str, float | None] | None:
        item = self._data.get(key)
        if item and item[1] is not None and item[1] <= now:
            del self._data[key]
            return None
        return item

    def _sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_every
            for key in [k for k, (_, expires) in self._data.items() if expires is not None and expires <= now]:
                del self._data[key]

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._alive(key, self._clock())
        return item[0] if item else None

    def set(self, key: str, value: str, *, ttl: int | None = None) -> None:
        now = self._clock()
        with self._lock:
            self._data[key] = (value, now + ttl if ttl else None)
            self._sweep(now)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def incr(self, key: str, *, ttl: int) -> int:
        now = self._clock()
        with self._lock:
            item = self._alive(key, now)
            value = int(item[0]) + 1 if item else 1
            self._data[key] = (str(value), item[1] if item else now + ttl)
            self._sweep(now)
        return value

    def __len__(self) -> int:
        return len(self._data)


def get_many(kv: KV, keys: list[str]) -> list[str | None]:
    """``kv.get`` of several keys, in one round trip where the store can."""
    many = getattr(kv, "get_many", None)
    return many(keys) if many is not None else [kv.get(k) for k in keys]


def set_many(kv: KV, values: dict[str, str], *, ttl: int | None = None) -> None:
    """``kv.set`` of several keys, in one round trip where the store can."""
    many = getattr(kv, "set_many", None)
    if many is not None:
        many(values, ttl=ttl)
        return
    for key, value in values.items():
        kv.set(key, value, ttl=ttl)


def put_many(conn: Connection, values: dict[str, str], *, expires_at: dt.datetime | None) -> None:
    """``DatabaseKV.set`` of several keys in ``conn``'s transaction (insert or overwrite), in one
    statement."""
    if not values:
        return
    conn.execute(_put(conn.dialect.name), [{"key": k, "value": v, "expires_at": expires_at} for k, v in values.items()])


@functools.cache
def _put(dialect: str):
    t = KeyValue.__table__
    stmt = upsert(dialect, t)
    return stmt.on_conflict_do_update(index_elements=[t.c.key],
                                      set_={"value": stmt.excluded.value, "expires_at": stmt.excluded.expires_at})


def make_kv(*, redis_url: str, engine: Engine) -> KV:
    return RedisKV(redis_url) if redis_url else DatabaseKV(engine)

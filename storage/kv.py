"""Short-lived shared state (dialogue state, access tokens, rate-limit counters).

Two interchangeable stores with one small interface: ``RedisKV`` when ``HUINONG_REDIS_URL`` is
set, ``DatabaseKV`` otherwise (a table, so several workers on one database still share it).
Values are strings; callers serialise.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from .db import session_scope
from .models import KeyValue, utcnow


class KV(Protocol):
    """Optionally also ``set_many(values, *, ttl)``: several ``set`` at once (see ``set_many``)."""

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, *, ttl: int | None = None) -> None: ...
    def delete(self, key: str) -> None: ...
    def incr(self, key: str, *, ttl: int) -> int: ...


class DatabaseKV:
    def __init__(self, engine: Engine):
        self.engine = engine

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
            return int(row.value)


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
    """Process-local store for tests and single-process tools."""

    def __init__(self):
        self._data: dict[str, tuple[str, float | None]] = {}

    def _alive(self, key: str) -> tuple[str, float | None] | None:
        import time

        item = self._data.get(key)
        if item and item[1] is not None and item[1] <= time.monotonic():
            self._data.pop(key, None)
            return None
        return item

    def get(self, key: str) -> str | None:
        item = self._alive(key)
        return item[0] if item else None

    def set(self, key: str, value: str, *, ttl: int | None = None) -> None:
        import time

        self._data[key] = (value, time.monotonic() + ttl if ttl else None)

    def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def incr(self, key: str, *, ttl: int) -> int:
        import time

        item = self._alive(key)
        value = int(item[0]) + 1 if item else 1
        expires = item[1] if item else time.monotonic() + ttl
        self._data[key] = (str(value), expires)
        return value


def set_many(kv: KV, values: dict[str, str], *, ttl: int | None = None) -> None:
    """``kv.set`` of several keys, in one round trip where the store can."""
    many = getattr(kv, "set_many", None)
    if many is not None:
        many(values, ttl=ttl)
        return
    for key, value in values.items():
        kv.set(key, value, ttl=ttl)


def make_kv(*, redis_url: str, engine: Engine) -> KV:
    return RedisKV(redis_url) if redis_url else DatabaseKV(engine)

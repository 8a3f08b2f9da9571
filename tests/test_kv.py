"""The database key-value store (the embedded default without Redis) forgets what expired: rows
whose time is up read as absent and are deleted about once a minute, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session, select

from storage import init_db, make_engine
from storage import kv as kvmod
from storage.kv import DatabaseKV, purge_expired
from storage.models import KeyValue, utcnow


@pytest.fixture
def engine(db_url):
    e = make_engine(db_url)
    init_db(e)
    yield e
    e.dispose()


def keys(engine) -> set[str]:
    with Session(engine) as s:
        return set(s.exec(select(KeyValue.key)))


def put(engine, key: str, expires_at: dt.datetime | None) -> None:
    with Session(engine) as s:
        s.add(KeyValue(key=key, value="v", expires_at=expires_at))
        s.commit()


def test_purge_deletes_only_what_expired(engine):
    now = utcnow()
    put(engine, "old-1", now - dt.timedelta(minutes=1))
    put(engine, "old-2", now - dt.timedelta(days=3))
    put(engine, "live", now + dt.timedelta(minutes=5))
    put(engine, "forever", None)
    assert purge_expired(engine, now=now) == 2
    assert keys(engine) == {"live", "forever"}
    assert purge_expired(engine, now=now) == 0


def test_purge_is_bounded_and_resumes(engine):
    past = utcnow() - dt.timedelta(hours=1)
    for i in range(7):
        put(engine, f"rl:user:{i}:1", past)
    assert purge_expired(engine, limit=5) == 5
    assert purge_expired(engine, limit=5) == 2
    assert keys(engine) == set()


def test_writes_purge_about_once_a_minute(engine, monkeypatch):
    store = DatabaseKV(engine)
    put(engine, "stale-state", utcnow() - dt.timedelta(seconds=1))
    store.set("a", "1", ttl=60)  # the first write of the process purges
    assert keys(engine) == {"a"}
    put(engine, "stale-counter", utcnow() - dt.timedelta(seconds=1))
    store.incr("b", ttl=60)  # within the minute: nothing purged
    assert "stale-counter" in keys(engine)
    monkeypatch.setattr(store, "_next_purge", 0.0)  # a minute later
    store.incr("b", ttl=60)
    assert keys(engine) == {"a", "b"} and store.get("b") == "2"


def test_a_full_purge_goes_on_at_the_next_write(engine, monkeypatch):
    monkeypatch.setattr(kvmod, "PURGE_LIMIT", 3)
    past = utcnow() - dt.timedelta(seconds=5)
    for i in range(5):
        put(engine, f"x{i}", past)
    store = DatabaseKV(engine)
    store.set("keep", "1")  # purges 3, more may be left
    assert len(keys(engine)) == 3
    store.set("keep", "2")  # so the next write goes on at once
    assert keys(engine) == {"keep"}


def test_memory_counters_of_past_minutes_are_swept():
    """Without Redis the mini-program's rate limits count in each worker's memory, a key per user
    and IP and minute (``rl:<scope>:<id>:<slot>``): the expired ones go about once a minute."""
    from storage.kv import MemoryKV

    clock = [1000.0]
    store = MemoryKV(sweep_every=60, clock=lambda: clock[0])
    for minute in range(30):  # one user, thirty minutes of use
        clock[0] = 1000.0 + 60 * minute
        assert store.incr(f"rl:user:7:{minute}", ttl=61) == 1
    assert len(store) <= 3  # the sweep kept only the counters still alive
    assert store.incr("rl:user:7:29", ttl=61) == 2
    clock[0] += 120
    assert store.get("rl:user:7:29") is None

"""SQLite's write gate (storage.db.WriteGate): writers take turns without sleeping, and the turn is
given back however a transaction ends (commit, rollback, error, a closed connection)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage.db import WriteGate, _GatedConnection, make_engine, reading, writing


@pytest.fixture
def engine(tmp_path):
    e = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with e.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)"))
    yield e
    e.dispose()


def write_from_another_thread(engine, k: int) -> float:
    """Seconds a write from a second thread waited for its turn."""
    took: list[float] = []

    def run():
        started = time.monotonic()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k, 0)"), {"k": k})
        took.append(time.monotonic() - started)

    t = threading.Thread(target=run)
    t.start()
    t.join(20)
    assert took, "the second writer never got its turn"
    return took[0]


def test_connections_carry_the_gate(engine):
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, _GatedConnection)
        # and keep statement journals in memory (no /var/tmp/etilqs_* file per multi-row insert)
        assert conn.exec_driver_sql("PRAGMA temp_store").scalar() == 2


def test_the_turn_is_given_back_after_commit_rollback_and_error(engine):
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1, 0)"))
    assert write_from_another_thread(engine, 2) < 1

    with engine.connect() as conn:
        conn.begin()
        conn.execute(text("INSERT INTO t VALUES (3, 0)"))
        conn.rollback()
    assert write_from_another_thread(engine, 4) < 1

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1, 0)"))
    assert write_from_another_thread(engine, 5) < 1


def test_a_connection_closed_in_a_transaction_gives_the_turn_back(engine):
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (10, 0)"))
    conn.invalidate()  # as when a worker's connection is dropped mid-transaction
    assert write_from_another_thread(engine, 11) < 1
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM t WHERE k = 10")).scalar() == 0


def test_writers_wait_for_the_holder_and_then_go_at_once(engine):
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (20, 0)"))
            holding.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    holding.wait(10)
    threading.Timer(0.3, release.set).start()
    waited = write_from_another_thread(engine, 21)
    t.join(10)
    assert 0.25 < waited < 1.5  # waited for the holder, then no busy-handler backoff on top


def test_many_threads_each_write_exactly_once(engine):
    def run(i):
        for j in range(20):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:k, :v)"), {"k": 1000 + i * 100 + j, "v": i})

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t WHERE k >= 1000")).scalar() == 160


def test_a_gate_held_too_long_lets_the_writer_go_ahead(tmp_path):
    gate = WriteGate(str(tmp_path / "x.lock"), timeout=0.2)
    assert gate.acquire()
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(gate.acquire()))
    started = time.monotonic()
    t.start()
    t.join(5)
    assert got == [False] and time.monotonic() - started < 2  # SQLite's own busy timeout takes over
    gate.release()
    assert gate.acquire()
    gate.release()


def test_the_write_and_read_connections_take_and_give_back_the_turn(engine):
    """``writing`` (the one write path's transactions) queues at the same gate and gives the turn
    back on commit and on error; ``reading`` never takes it."""
    from sqlalchemy.exc import IntegrityError

    with writing(engine) as conn:
        assert conn.connection.dbapi_connection.holds_gate
        conn.execute(text("INSERT INTO t VALUES (10, 0)"))
    assert write_from_another_thread(engine, 11) < 1

    with pytest.raises(IntegrityError), writing(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES (12, 0)"))
        conn.execute(text("INSERT INTO t VALUES (10, 0)"))
    assert write_from_another_thread(engine, 13) < 1
    with engine.connect() as conn:  # the failed transaction left nothing
        assert conn.execute(text("SELECT count(*) FROM t WHERE k = 12")).scalar() == 0

    with writing(engine) as conn:
        conn.execute(text("INSERT INTO t VALUES (14, 0)"))
        with reading(engine) as reader:  # reads while another connection holds the turn
            assert not reader.connection.dbapi_connection.holds_gate
            assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 3  # 10, 11, 13; not 14 yet
            assert not reader.connection.dbapi_connection.holds_gate


@pytest.mark.parametrize("sync, synchronous, pages", [("normal", 1, 1000), ("full", 2, 10000)])
def test_sqlite_sync_sets_how_commits_reach_the_disk(tmp_path, sync, synchronous, pages):
    """HUINONG_SQLITE_SYNC: ``full`` fsyncs every commit, and then checkpoints less often."""
    e = make_engine(f"sqlite:///{tmp_path / 'sync.db'}", sqlite_sync=sync)
    try:
        with e.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == pages
    finally:
        e.dispose()


def test_an_unknown_sqlite_sync_is_refused():
    from bot.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="HUINONG_SQLITE_SYNC must be normal or full"):
        Settings.from_env({"HUINONG_SQLITE_SYNC": "off"}).validate()
    assert Settings.from_env({"HUINONG_SQLITE_SYNC": "full"}).validate().sqlite_sync == "full"

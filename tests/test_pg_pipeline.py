"""The flood path's PostgreSQL specifics: psycopg's pipeline mode in ``dbapi_writing`` and
``Statements.reads``, and the start-up check of the server's configuration."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from storage import make_engine
from storage.db import database_warnings, dbapi_reading, dbapi_writing
from storage.intake import statements

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_the_pipelined_writes_commit_together(engine):
    with dbapi_writing(engine) as cur:
        assert cur.connection.info.pipeline_status.name == "ON"
        cur.executemany("INSERT INTO refcounter (day, last) VALUES (%s, %s)", [("20260101", 1), ("20260102", 2)])
        cur.execute("UPDATE refcounter SET last = last + 1 WHERE day = %s RETURNING last", ["20260102"])
        assert cur.fetchone() == (3,)  # a result read inside the block: the statements so far are sent
    assert _count(engine, "refcounter") == 2


def test_a_conflict_in_the_pipeline_rolls_back_all_of_it_and_leaves_the_connection_usable(engine):
    conflict = statements(engine).conflict
    with dbapi_writing(engine) as cur:
        cur.execute("INSERT INTO refcounter (day, last) VALUES (%s, %s)", ["20260101", 1])
    for _ in range(3):  # the pool hands the same connection out again
        with pytest.raises(conflict), dbapi_writing(engine) as cur:
            cur.execute("INSERT INTO refcounter (day, last) VALUES (%s, %s)", ["20260105", 1])
            cur.executemany("INSERT INTO refcounter (day, last) VALUES (%s, %s)", [("20260106", 1), ("20260101", 9)])
        assert _count(engine, "refcounter") == 1
    with dbapi_writing(engine) as cur:
        cur.execute("INSERT INTO refcounter (day, last) VALUES (%s, %s)", ["20260107", 1])
    assert _count(engine, "refcounter") == 2


def test_reads_take_ids_for_the_new_cases_from_the_sequence(engine):
    sql = statements(engine)
    with dbapi_reading(engine) as cur:
        first = sql.reads(cur, ["o-nobody"], step="warning", case_ids=3)
    with dbapi_reading(engine) as cur:
        second = sql.reads(cur, ["o-nobody", "o-none"], step="warning", case_ids=2)
    assert first.senders == {} and second.senders == {}
    assert len(first.case_ids) == 3 and len(second.case_ids) == 2
    assert first.case_ids == sorted(first.case_ids) and max(first.case_ids) < min(second.case_ids)


def test_database_warnings_name_autovacuum_when_it_is_off(engine, tmp_path):
    with engine.connect() as conn:
        autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar()
    warnings = database_warnings(engine)
    if autovacuum == "on":
        assert warnings == []
    else:
        assert len(warnings) == 1 and "autovacuum off" in warnings[0] and "ANALYZE" in warnings[0]
    sqlite = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert database_warnings(sqlite) == []
    sqlite.dispose()


def _backend_pid(engine) -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def _terminate(pg_url: str, pid: int) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_connection_the_server_dropped_while_idle_is_replaced_on_checkout(pg_url, monkeypatch):
    import storage.db

    engine = make_engine(pg_url, pool_size=1)
    try:
        pid = _backend_pid(engine)
        _terminate(pg_url, pid)
        monkeypatch.setattr(storage.db, "PING_AFTER_IDLE", 0.0)  # as if it had sat in the pool for a while
        assert _backend_pid(engine) != pid  # the ping failed and the pool connected anew
        with dbapi_reading(engine) as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(pg_url, monkeypatch):
    import storage.db

    monkeypatch.setattr(storage.db, "PING_AFTER_IDLE", 3600.0)
    engine = make_engine(pg_url, pool_size=1)
    pings = []
    real_ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: pings.append(conn) or real_ping(conn))
    try:
        for _ in range(5):
            with dbapi_reading(engine) as cur:
                cur.execute("SELECT 1")
        assert pings == []
        monkeypatch.setattr(storage.db, "PING_AFTER_IDLE", 0.0)
        with dbapi_reading(engine) as cur:
            cur.execute("SELECT 1")
        assert len(pings) == 1
    finally:
        engine.dispose()

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


def test_one_read_returns_the_senders_the_rules_and_ids_for_new_cases(tmp_path, pg_url):
    from tests.test_quick_report import bind
    from tests.wechat_user import WeChatApp

    w = WeChatApp(tmp_path, pg_url, mode="safe")
    try:
        bind(w, "o-known-1")
        bind(w, "o-known-2")
        engine = w.services.engine
        sql = statements(engine)
        with dbapi_reading(engine) as cur:
            first = sql.reads(cur, ["o-known-1", "o-nobody"], step="warning", case_ids=3)
            rules = sql.deadline_rules(cur, "warning")
        with dbapi_reading(engine) as cur:
            second = sql.reads(cur, ["o-known-1", "o-known-2"], step="warning", case_ids=2)
        with dbapi_reading(engine) as cur:
            nobody = sql.reads(cur, ["o-nobody"], step="warning", case_ids=2)
        assert set(first.senders) == {"o-known-1"} and set(second.senders) == {"o-known-1", "o-known-2"}
        assert first.rules == second.rules == rules and rules  # the demo county has its rules
        assert len(first.case_ids) == 3 and len(second.case_ids) == 2
        assert first.case_ids == sorted(first.case_ids) and max(first.case_ids) < min(second.case_ids)
        assert (nobody.senders, nobody.rules, nobody.case_ids) == ({}, {}, [])  # nothing to file, no ids taken
    finally:
        w.close()


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


def test_a_report_on_a_connection_dropped_a_moment_ago_is_still_filed(tmp_path, pg_url, monkeypatch):
    """Within the second after its last use a pooled connection is not pinged: if the server
    dropped it, the flood path's statement fails, and the report goes to the general path, which
    files and answers it on a new connection. Nothing is lost or doubled."""
    import psycopg

    import storage.db
    from storage.models import Case
    from tests.test_quick_report import bind, click, rows
    from tests.wechat_user import WeChatApp

    monkeypatch.setattr(storage.db, "PING_AFTER_IDLE", 3600.0)
    w = WeChatApp(tmp_path, pg_url, mode="safe")
    try:
        for o in ("o-before", "o-after"):
            bind(w, o)
        assert "编号 SB" in w.inbox.handle(click("o-before"))
        database = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", [database])
        filed = w.inbox.quick.filed
        reply = w.inbox.handle(click("o-after"))
        assert "编号 SB" in reply
        assert w.inbox.quick.filed == filed  # the general path filed it
        assert len(rows(w, Case)) == 2
    finally:
        w.close()

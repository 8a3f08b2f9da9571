"""PostgreSQL specifics of the write path: a refused transaction leaves the pooled connection
usable, the one read of a batch's senders, the pool's pings, and the start-up check of the
server's configuration."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from storage import make_engine
from storage.db import database_warnings, reading, writing

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(pg_url):
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def test_a_conflict_rolls_back_all_of_it_and_leaves_the_connection_usable(engine):
    from sqlalchemy.exc import IntegrityError

    with writing(engine) as conn:
        conn.execute(text("INSERT INTO refcounter (day, last) VALUES ('20260101', 1)"))
    for _ in range(3):  # the pool hands the same connection out again
        with pytest.raises(IntegrityError), writing(engine) as conn:
            conn.execute(text("INSERT INTO refcounter (day, last) VALUES ('20260105', 1)"))
            conn.execute(text("INSERT INTO refcounter (day, last) VALUES (:d, :n)"),
                         [{"d": "20260106", "n": 1}, {"d": "20260101", "n": 9}])
        assert _count(engine, "refcounter") == 1
    with writing(engine) as conn:
        conn.execute(text("INSERT INTO refcounter (day, last) VALUES ('20260107', 1)"))
    assert _count(engine, "refcounter") == 2


def test_one_read_returns_the_senders_with_their_households_and_villages(tmp_path, pg_url):
    from storage.people import senders
    from tests.test_quick_report import bind
    from tests.wechat_user import WeChatApp

    w = WeChatApp(tmp_path, pg_url, mode="safe")
    try:
        bind(w, "o-known-1")
        bind(w, "o-known-2", household=False)
        engine = w.services.engine
        with reading(engine) as conn:
            first = senders(conn, ["o-known-1", "o-nobody"], state_prefix="wechat:dlg:")
            second = senders(conn, ["o-known-1", "o-known-2"])
            nobody = senders(conn, ["o-nobody"])
        assert set(first) == {"o-known-1"} and set(second) == {"o-known-1", "o-known-2"} and nobody == {}
        one, two = second["o-known-1"], second["o-known-2"]
        assert one.head_name == "户主n-1" and one.village_level == "village" and one.state_key is None
        assert two.household_id is None and two.head_name is None and two.village_row_id is None
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
        with reading(engine) as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
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
            with reading(engine) as conn:
                conn.execute(text("SELECT 1"))
        assert pings == []
        monkeypatch.setattr(storage.db, "PING_AFTER_IDLE", 0.0)
        with reading(engine) as conn:
            conn.execute(text("SELECT 1"))
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

"""Engine construction and sessions for SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from psycopg.types.array import ListBinaryDumper
from sqlalchemy import ARRAY, JSON, String, Text, any_, bindparam, cast, event, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

__all__ = [
    "Session", "make_engine", "session_on", "session_scope", "reading", "writing", "upsert", "one_of", "insert_rows", "database_warnings", "init_db",
    "is_sqlite", "normalise_url",
]


def normalise_url(url: str) -> str:
    """Use the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url if isinstance(engine_or_url, str) else str(engine_or_url.url)
    return url.startswith("sqlite")


class WriteGate:
    """Hands SQLite's single write lock from one transaction to the next without sleeping.

    SQLite lets one writer in at a time; a writer that finds the lock taken retries on a
    backoff of 1, 2, 5, 10 … 100 ms (its busy handler), so under load the lock sits idle while
    writers sleep, and the tail latency of a burst of reports grows to hundreds of ms. The gate
    queues the writers of one process on a ``threading.Lock`` (a waiter wakes the moment the
    holder releases) and the processes on one database on an ``flock`` of ``<db>-writer.lock``,
    polled every 0.2 ms. SQLite's own lock stays the guard: the gate only orders the writers, and
    after ``timeout`` seconds a waiter goes ahead to SQLite's busy timeout as before. A killed
    process loses its ``flock`` with it.
    """

    POLL = 0.0002

    def __init__(self, path: str, *, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> bool:
        """Wait for the turn to write; False when it timed out (the caller goes ahead anyway)."""
        deadline = time.monotonic() + self.timeout
        if not self._thread_lock.acquire(timeout=self.timeout):
            return False
        fd = self._file()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._thread_lock.release()
                    return False
                time.sleep(self.POLL)

    def release(self) -> None:
        try:
            fcntl.flock(self._file(), fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class _GatedConnection(sqlite3.Connection):
    """A sqlite3 connection that gives the gate back when its transaction ends, however it ends."""

    gate: WriteGate | None = None
    holds_gate = False

    def enter(self) -> None:
        if self.gate is not None and not self.holds_gate:
            self.holds_gate = self.gate.acquire()

    def _leave(self) -> None:
        if self.holds_gate:
            self.holds_gate = False
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._leave()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._leave()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._leave()


def _gated_factory(gate: WriteGate):
    return type("GatedConnection", (_GatedConnection,), {"gate": gate})


def _begin_immediate(dbapi_conn: sqlite3.Connection) -> None:
    """Wait for the write gate (when the connection has one), then take SQLite's write lock."""
    if isinstance(dbapi_conn, _GatedConnection):
        dbapi_conn.enter()
    try:
        dbapi_conn.execute("BEGIN IMMEDIATE")
    except BaseException:
        if isinstance(dbapi_conn, _GatedConnection):
            dbapi_conn._leave()
        raise


#: SQLite's ``synchronous`` per ``HUINONG_SQLITE_SYNC``, and the WAL pages between checkpoints.
#: ``normal``: a commit is in the WAL file before the reply (it survives the service being killed)
#: but only fsynced at checkpoints, so a power cut can take the last commits; SQLite's default
#: interval of 1000 pages keeps that window under a second of a flood. ``full``: every commit is
#: fsynced; the interval then bounds only the WAL's size, and 10,000 pages (40 MB) checkpoints a
#: tenth as often. One-click reports over HTTP (2 workers, alternating runs with a throwaway load
#: script, 2026-12-01): full 848-897/s with 1000 pages, 1281-1284/s with 10,000; normal 1370-1423/s.
SQLITE_SYNC = {"normal": ("NORMAL", 1000), "full": ("FULL", 10000)}


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False, sqlite_sync: str = "normal") -> Engine:
    """Build an engine with the pragmas each backend needs.

    SQLite runs in WAL mode with a busy timeout so several threads and processes can write
    (one at a time) without "database is locked" errors; foreign keys are enforced;
    ``sqlite_sync`` is ``normal`` or ``full`` (:data:`SQLITE_SYNC`).
    """
    synchronous, checkpoint_pages = SQLITE_SYNC[sqlite_sync]
    url = normalise_url(url)
    if is_sqlite(url):
        parsed = make_url(url)
        connect_args: dict = {"check_same_thread": False, "timeout": 30}
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            connect_args["factory"] = _gated_factory(WriteGate(parsed.database + "-writer.lock"))
        # LIFO: the connection used last (its page cache still warm) is handed out first; with
        # FIFO, `benchmarks/inprocess_latency.py --concurrent 4` filed about a quarter fewer reports/s.
        engine = create_engine(url, echo=echo, connect_args=connect_args, pool_use_lifo=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            # Python's sqlite3 opens transactions lazily; take the write lock at BEGIN so a
            # read-then-write transaction cannot fail half way with "database is locked".
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # Statement journals (a multi-row INSERT inside a transaction needs one) in memory: as
            # files they cost an open, a write and an unlink of /var/tmp/etilqs_* per batch.
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            if not conn.get_execution_options().get(READ_ONLY):
                _begin_immediate(conn.connection.dbapi_connection)

        return engine
    # LIFO as on SQLite: the connection used last is handed out first, so under a flood a worker
    # uses the same one or two, whose statements psycopg has already prepared on the server (it
    # prepares one after its fifth run on a connection).
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_use_lifo=True)
    _ping_when_idle(engine)

    @event.listens_for(engine, "connect")
    def _binary_arrays(dbapi_conn, _record):  # pragma: no cover - trivial
        # Lists (the ``= ANY(…)`` parameters, the columns of :func:`insert_rows`) in PostgreSQL's
        # binary array format: psycopg's text format escapes every element with a regular
        # expression, which was a third of a one-click batch's CPU (2026-12-08, batches of 8).
        dbapi_conn.adapters.register_dumper(list, ListBinaryDumper)

    return engine


#: The execution option of :func:`reading`'s connections: on SQLite their "transactions" take
#: neither the write gate nor ``BEGIN IMMEDIATE`` (sqlite3 runs each statement on its own).
READ_ONLY = "huinong_read_only"

#: A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out.
PING_AFTER_IDLE = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, but only for a connection that has been idle in the pool
    for :data:`PING_AFTER_IDLE` seconds: a ping is a round trip, and under a flood a worker hands
    out a connection hundreds of times a second (one ping per batch of reports was one round trip
    in five). A connection the server dropped (a restart, an idle timeout) has almost always been
    idle; it fails the ping and the pool connects anew (``DisconnectionError``). One that drops
    within the second after its last use fails its statement instead: the flood path then hands
    its reports to the general path, and the pool discards the connection when it comes back."""
    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn, record):  # pragma: no cover - trivial
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn, record):  # pragma: no cover - trivial
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, record, _proxy):
        returned = record.info.get("returned_at")
        if returned is not None and time.monotonic() - returned < PING_AFTER_IDLE:
            return
        try:
            if not engine.dialect.do_ping(dbapi_conn):
                raise DisconnectionError("the database did not answer the ping")
        except DisconnectionError:
            raise
        except Exception as exc:
            raise DisconnectionError(f"the database did not answer the ping: {type(exc).__name__}") from exc


@contextlib.contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only, given back to the pool on leaving.

    On SQLite each statement reads its own snapshot (WAL) without taking the write gate or the
    write lock, so a batch's reads never hold up a writer; on PostgreSQL the reads run in a
    transaction that is rolled back on leaving.
    """
    with engine.connect() as conn:
        yield conn.execution_options(**{READ_ONLY: True}) if is_sqlite(engine) else conn


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A connection in a write transaction: committed when the block ends, rolled back on any
    error. It begins as every transaction of :func:`make_engine`'s engines does (on SQLite: the
    write gate, then ``BEGIN IMMEDIATE``)."""
    with engine.begin() as conn:
        yield conn


def session_on(conn: Connection) -> Session:
    """A session in ``conn``'s transaction (it flushes there; committing is the connection's)."""
    return Session(bind=conn)


def one_of(column: Any, name: str, dialect: str, item_type: Any) -> Any:
    """``column IN (:name …)`` as each database runs it best. On PostgreSQL ``column = ANY(:name)``
    with one array parameter: the statement's text does not change with the list's length, so
    psycopg converts it once and the server prepares it once (an ``IN`` list of n values is a new
    statement for every n, and over 50 parameters psycopg parses it anew every time: 1.5 ms a
    batch, measured). Elsewhere an expanding ``IN``. ``item_type``: the SQL type of one value."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(item_type)))
    return column.in_(bindparam(name, expanding=True))


def insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]], *, key: str | None = None,
                returning: tuple[str, ...] = ()) -> dict[Any, Any]:
    """``INSERT`` ``rows`` (dicts with the same keys) into ``table`` in one statement whatever their
    number, and, when ``key`` names a unique column the rows carry, ``{key value: (returning
    columns…)}`` of the new rows. Python-side column defaults are filled in as for any insert.

    On PostgreSQL the rows go as one array per column, ``INSERT … SELECT unnest(…), … RETURNING``:
    the text does not depend on the number of rows, so psycopg converts it once and the server
    prepares it once (a multi-row ``VALUES`` is a new statement for every n, parsed anew by
    psycopg each time over 50 parameters; psycopg's ``executemany`` costs a message and a result
    per row). Batches of 8 one-click reports, 2026-12-08: 0.67 ms of the worker's CPU for the
    cases against 1.68 ms with ``executemany`` and 0.24 ms more to read their ids.
    On SQLite an ``executemany`` of one prepared statement, then one read by ``key``.
    """
    if not rows:
        return {}
    if conn.dialect.name == "postgresql":
        first = rows[0]
        same = tuple(k for k in first if all(row[k] == first[k] for row in rows[1:]))
        varying = tuple(k for k in first if k not in same)
        stmt = _unnest_insert(table, varying, same, (key, *returning) if key else ())
        params = {f"s_{k}": first[k] for k in same}
        params.update({f"u_{k}": [json.dumps(row[k]) for row in rows] if isinstance(table.c[k].type, JSON)
                       else [row[k] for row in rows] for k in varying})
        result = conn.execute(stmt, params)
        return {r[0]: tuple(r[1:]) for r in result} if key else {}
    conn.execute(insert(table), rows)
    if not key:
        return {}
    stmt = _select_by(table, key, returning, conn.dialect.name)
    return {r[0]: tuple(r[1:]) for r in conn.execute(stmt, {"keys": [row[key] for row in rows]})}


def _plain(sql_type: Any) -> Any:
    """The array element type of a column: a string without its length (a cast to ``VARCHAR(32)``
    would cut a longer value short)."""
    return String() if isinstance(sql_type, String) and not isinstance(sql_type, Text) else sql_type


@functools.cache
def _unnest_insert(table: Any, varying: tuple[str, ...], same: tuple[str, ...], returning: tuple[str, ...]) -> Any:
    """``INSERT … SELECT unnest(:u_a), …, :s_b, …``: a column whose value is the same in every row
    goes once, as a plain parameter (each array costs psycopg about as much to send as a statement's
    other work: most columns of a one-click batch hold the same value)."""
    columns = [table.c[k] for k in varying + same]
    # A JSON value goes as its text: an array of JSON lists would read as a two-dimensional array.
    values = [cast(func.unnest(bindparam(f"u_{k}", type_=ARRAY(Text()))), table.c[k].type)
              if isinstance(table.c[k].type, JSON) else func.unnest(bindparam(f"u_{k}", type_=ARRAY(_plain(table.c[k].type))))
              for k in varying]
    values += [bindparam(f"s_{k}", type_=table.c[k].type) for k in same]
    stmt = insert(table).from_select(columns, select(*values))
    return stmt.returning(*[table.c[k] for k in returning]) if returning else stmt


@functools.cache
def _select_by(table: Any, key: str, returning: tuple[str, ...], dialect: str) -> Any:
    return select(table.c[key], *[table.c[k] for k in returning]).where(
        one_of(table.c[key], "keys", dialect, _plain(table.c[key].type)))


def upsert(dialect: str, table: Any):
    """``INSERT … ON CONFLICT`` in the words of the database ``dialect`` names (``postgresql``,
    ``sqlite``): SQLAlchemy's own construct of the dialect (both share its API)."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def database_warnings(engine: Engine) -> list[str]:
    """What in the database's own configuration will hurt the service, for the operator (checked
    when ``huinong serve`` starts).

    PostgreSQL with autovacuum off never analyzes the tables: the planner keeps estimating them as
    they were when created, and plans that fit a nearly empty table (a scan of every open case to
    find one household's) get slower with every report. Measured on a server with autovacuum off
    (2026-12-01): one-click reports over HTTP fell 563 → 470 → 411 → 368 per second over four
    rounds of 2000, and the batch's read took 1.0 ms instead of 0.04 ms, until ``ANALYZE``.
    """
    if is_sqlite(engine):
        return []
    try:
        with engine.connect() as conn:
            autovacuum = conn.exec_driver_sql("SHOW autovacuum").scalar()
    except Exception as exc:  # noqa: BLE001 - a warning, not a reason to refuse to start
        return [f"could not read the database's settings: {type(exc).__name__}"]
    if str(autovacuum).lower() != "on":
        return ["PostgreSQL runs with autovacuum off: the tables are never analyzed and query plans "
                "degrade as they grow. Turn it on (the default) or run ANALYZE regularly (e.g. hourly from cron)."]
    return []


def init_db(engine: Engine) -> None:
    """Create every table that does not exist yet. Safe to run any number of times."""
    from . import models  # noqa: F401  (registers the tables)

    SQLModel.metadata.create_all(engine)

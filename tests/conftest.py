"""Shared fixtures.

Database tiers:
- ``db_url``: parametrised over SQLite (a file in tmp_path) and a real PostgreSQL database
  created for this test run (for each xdist worker). When ``CI=true`` an unreachable PostgreSQL
  fails the run; elsewhere those tests skip with a message that says how to enable them. Either
  way every table exists and holds no rows: the SQLite file is a copy of a per-run template, the
  PostgreSQL database is emptied in place (``_reset_pg``).
- ``services`` / ``app`` / ``client``: the service on SQLite, no network, no model.

The run is the test environment (``HUINONG_ENV=test``: cheap password hashing) and runs on every
core (pytest-xdist, ``--dist loadgroup``; see ``pytest_xdist_auto_num_workers`` and the
``xdist_group`` marks of the multi-process and real-model tests).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import uuid
from pathlib import Path

import pytest

# The process environment of the whole run is the test environment: storage.people hashes staff
# passwords with a trivial scrypt cost there (the demo county alone creates six accounts per test).
os.environ["HUINONG_ENV"] = "test"

try:  # CI runs the property-based tests reproducibly; locally every run explores new examples.
    from hypothesis import settings as _hyp

    _hyp.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI", "").lower() == "true":
        _hyp.load_profile("ci")
except ImportError:  # pragma: no cover - hypothesis is a dev dependency
    pass

PG_ADMIN_URL = os.environ.get("HUINONG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (the default addopts): a worker per usable core, at most 4, as every worker has its
    own PostgreSQL database and connection pools (on the 2-core machine a third worker, for the
    mostly waiting ``processes`` group, measured no faster: 2:46 against 2:44)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return min(len(os.sched_getaffinity(0)), 4)


#: Groups that start first (the longest chains of one worker's run), in this order.
_FIRST_GROUPS = ("processes", "model")


def _group(item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default")) if mark else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """Under ``--dist loadgroup``, the tests of a module that share a module-scoped fixture run on one
    worker (the fixture is built once and its state is shared as written), unless they are already in
    a group. The ``processes`` and ``model`` groups go first (the scheduler hands out work in this
    order, ``--no-loadscope-reorder``): one worker runs each of them from the start while the other
    tests spread over what is left."""
    for item in items:
        if _group(item):
            continue
        defs = getattr(item, "_fixtureinfo", None)
        scopes = {d.scope for fdefs in (defs.name2fixturedefs.values() if defs else ()) for d in fdefs}
        if "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__.rsplit(".", 1)[-1]))
    rank = {name: i for i, name in enumerate(_FIRST_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item) or "", len(rank)))  # stable: order kept otherwise


@pytest.fixture(scope="session", autouse=True)
def _buffered_test_client():
    """Every Flask test client of the run reads a response whole and closes the app's iterator at
    once (werkzeug's ``buffered=True``), so a file the app sent (a static asset, an evidence photo)
    is closed when the request returns instead of whenever the garbage collector finds the unread
    response, which under ``filterwarnings = error`` failed whichever test was running then."""
    from flask import Flask
    from flask.testing import FlaskClient

    class BufferedClient(FlaskClient):
        def open(self, *args, buffered: bool = True, **kwargs):
            return super().open(*args, buffered=buffered, **kwargs)

    previous = Flask.test_client_class
    Flask.test_client_class = BufferedClient
    yield
    Flask.test_client_class = previous


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means "not available"
        return f"{type(exc).__name__}: {exc}"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _worker_tag(request) -> str:
    """``gw0``, ``gw1``… under pytest-xdist, ``main`` otherwise (for names a worker owns)."""
    return getattr(request.config, "workerinput", {}).get("workerid", "main")


@pytest.fixture(scope="session")
def pg_database(request):
    """The PostgreSQL database of this run (of this xdist worker), with every table; dropped at the end."""
    problem = _pg_reachable()
    if problem:
        msg = (
            f"PostgreSQL not reachable at {PG_ADMIN_URL} ({problem}). Start it, or set "
            "HUINONG_TEST_PG_URL to an admin URL of a server with trust or password auth."
        )
        if IN_CI:
            pytest.fail("CI=true requires PostgreSQL: " + msg)
        pytest.skip(msg)
    name = f"huinong_test_{uuid.uuid4().hex[:10]}_{_worker_tag(request)}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
        _rebuild_pg(url)
        yield url
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


#: What :func:`_pg_schema` says about a database that has exactly the tables of ``init_db``.
_PG_SCHEMA: dict[str, tuple] = {}

_PG_SCHEMA_SQL = """
SELECT (SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'),
       (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'),
       (SELECT count(*) FROM information_schema.table_constraints WHERE constraint_schema = 'public'),
       (SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'),
       (SELECT array_agg(sequence_name::text ORDER BY sequence_name) FROM information_schema.sequences
         WHERE sequence_schema = 'public')
"""


def _rebuild_pg(url: str) -> None:
    """Drop and create every table (as every test's reset once did); remember what that schema is."""
    import psycopg
    from sqlmodel import SQLModel

    from storage import init_db, make_engine, models  # noqa: F401

    engine = make_engine(url)
    SQLModel.metadata.drop_all(engine)
    init_db(engine)
    engine.dispose()
    with psycopg.connect(url) as conn:
        _PG_SCHEMA[url] = conn.execute(_PG_SCHEMA_SQL).fetchone()


#: Rows (live and dead) above which a reset truncates instead of deleting: deleted rows stay as
#: dead tuples until a VACUUM, and the development server runs without autovacuum.
_PG_TRUNCATE_ABOVE = 5000


def _reset_pg(url: str) -> None:
    """Every table of ``init_db``, empty, its ids starting at 1 again.

    When the previous test left the schema as ``init_db`` makes it (almost always), deleting the
    rows and restarting the sequences in one round trip does that in a few milliseconds, where
    dropping and creating every table took a few hundred (after a test that wrote thousands of rows,
    ``TRUNCATE``, which leaves no dead tuples behind); otherwise (a test dropped tables) the tables
    are dropped and created.
    """
    import psycopg
    from sqlmodel import SQLModel

    from storage import models  # noqa: F401

    expected = _PG_SCHEMA.get(url)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute(_PG_SCHEMA_SQL).fetchone()
            if expected is not None and found == expected:
                tables = [t.name for t in reversed(SQLModel.metadata.sorted_tables)]
                rows = conn.execute("SELECT coalesce(sum(n_live_tup + n_dead_tup), 0) FROM pg_stat_user_tables")
                if rows.fetchone()[0] > _PG_TRUNCATE_ABOVE:
                    statements = ["TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"]
                else:
                    statements = [f'DELETE FROM "{t}"' for t in tables]
                    statements += [f'ALTER SEQUENCE "{seq}" RESTART' for seq in found[4] or []]
                conn.execute("SET lock_timeout = '10s'")
                with conn.transaction():
                    conn.execute("; ".join(statements))
                return
    except psycopg.errors.LockNotAvailable:
        # A connection of an earlier test still holds a lock: end every other session first.
        _pg_admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{url.rsplit('/', 1)[1]}' AND pid <> pg_backend_pid()"
        )
    _rebuild_pg(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite file with every table (and no rows), made once per run (per xdist worker)."""
    import sqlite3

    from storage import init_db, make_engine

    path = tmp_path_factory.mktemp("template") / "schema.db"
    engine = make_engine(f"sqlite:///{path}")
    init_db(engine)
    engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn:  # everything in the main file, no -wal
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _sqlite_from_template(template: Path, path: Path) -> None:
    """``path`` as a copy of the template, unless the test already has a database there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, path)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A clean database URL (every table, no rows), once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        _sqlite_from_template(request.getfixturevalue("sqlite_template"), tmp_path / "test.db")
        return f"sqlite:///{tmp_path / 'test.db'}"
    url = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
def pg_url(pg_database):
    """A clean PostgreSQL URL (for tests that only make sense there)."""
    _reset_pg(pg_database)
    return pg_database


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """The bundled e5-small model converted once per run (per xdist worker: the tests that use it
    are in the ``model`` group); (cache folder, embedder, the conversion's log lines)."""
    from knowledge.embedder import load_embedder

    cache = tmp_path_factory.mktemp("embedder-cache")
    messages: list[str] = []
    embedder = load_embedder(None, cache, log=messages.append)
    return cache, embedder, messages


def make_settings(tmp_path, db_url: str | None = None, **overrides):
    from bot.settings import Settings
    from storage.crypto import generate_data_key

    base = {
        "env": "test",
        "instance_dir": str(tmp_path / "instance"),
        "database_url": db_url or f"sqlite:///{tmp_path / 'test.db'}",
        "data_key": generate_data_key(),
        "secret_key": secrets.token_urlsafe(24),
        "wechat_token": "test-token-123",
        "cookie_secure": False,
    }
    base.update(overrides)
    return Settings.from_env(environ={}, overrides=base).validate()


@pytest.fixture
def settings(tmp_path, sqlite_template):
    _sqlite_from_template(sqlite_template, tmp_path / "test.db")
    return make_settings(tmp_path)


@pytest.fixture
def services(settings):
    from bot.services import build_services

    svc = build_services(settings)
    yield svc
    svc.engine.dispose()


@pytest.fixture
def ctx(services):
    return services.ctx


@pytest.fixture
def demo(ctx):
    """The demo county loaded; returns the DemoResult (staff accounts with passwords)."""
    from handlers.demo import load_demo

    return load_demo(ctx)


@pytest.fixture
def app(services):
    from bot.app import create_app

    application = create_app(services=services)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def client(app):
    return app.test_client()

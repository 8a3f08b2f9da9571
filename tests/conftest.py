"""Shared fixtures.

Database tiers:
- ``db_url``: parametrised over SQLite (a file in tmp_path) and a real PostgreSQL database
  created for this test run. When ``CI=true`` an unreachable PostgreSQL fails the run;
  elsewhere those tests skip with a message that says how to enable them.
- ``services`` / ``app`` / ``client``: the service on SQLite, no network, no model.
"""

from __future__ import annotations

import os
import secrets
import uuid

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


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means "not available"
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for the whole run, dropped at the end."""
    problem = _pg_reachable()
    if problem:
        msg = (
            f"PostgreSQL not reachable at {PG_ADMIN_URL} ({problem}). Start it, or set "
            "HUINONG_TEST_PG_URL to an admin URL of a server with trust or password auth."
        )
        if IN_CI:
            pytest.fail("CI=true requires PostgreSQL: " + msg)
        pytest.skip(msg)
    import psycopg

    name = f"huinong_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_pg(url: str) -> None:
    from sqlmodel import SQLModel

    from storage import init_db, make_engine

    engine = make_engine(url)
    from storage import models  # noqa: F401

    SQLModel.metadata.drop_all(engine)
    init_db(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A clean database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    url = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
def pg_url(pg_database):
    """A clean PostgreSQL URL (for tests that only make sense there)."""
    _reset_pg(pg_database)
    return pg_database


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
def settings(tmp_path):
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

"""Fixtures: a real PostgreSQL, SeaweedFS and Azurite for the whole session; an app per need.

PostgreSQL is the server in ``TEST_DATABASE_URL`` when set, else an embedded
one (pgserver). Each session works in a database of its own, created here
and dropped at the end, so a developer's data is never touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import create_app
from app.components import get_database, sweeper
from app.migrations import apply_migrations
from app.uploads import recorder as recorder_module
from devstack.stack import LocalStack
from tests.helpers import recorder
from tests.servers import Tinyproxy


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, dict[str, str]]]:
    """Start PostgreSQL (unless TEST_DATABASE_URL is set), SeaweedFS and Azurite once."""
    env: dict[str, str] = {}
    if os.environ.get("TEST_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
    local = LocalStack(tmp_path_factory.mktemp("stack"), s3_port=None, azurite_port=None)
    started = local.start(env)
    try:
        assert local.azurite is not None, "Azurite is needed by the tests: install Node.js and run `npm ci`"
        yield local, {**env, **started}
    finally:
        local.stop()


@pytest.fixture(scope="session")
def server_dsn(stack: tuple[LocalStack, dict[str, str]]) -> str:
    """Return the URL of the PostgreSQL server the tests use."""
    return stack[1]["DATABASE_URL"]


@pytest.fixture(scope="session")
def make_database(server_dsn: str) -> Iterator[Callable[[], str]]:
    """Return a factory of fresh, empty databases, all dropped at the end."""
    created: list[str] = []

    def admin() -> psycopg2.extensions.connection:
        conn = psycopg2.connect(server_dsn)
        conn.autocommit = True
        return conn

    def make() -> str:
        name = f"uploads_test_{uuid.uuid4().hex[:12]}"
        conn = admin()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        created.append(name)
        return psycopg2.extensions.make_dsn(server_dsn, dbname=name)

    yield make
    conn = admin()
    with conn.cursor() as cur:
        for name in created:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


@pytest.fixture(scope="session")
def database_url(make_database: Callable[[], str]) -> str:
    """Return a database with every migration applied, shared by the session."""
    dsn = make_database()
    apply_migrations(dsn)
    return dsn


@pytest.fixture
def rls_database(make_database: Callable[[], str]) -> Iterator[tuple[str, str]]:
    """Return (owner DSN, DSN of a role that owns nothing) for a database with RLS on."""
    owner_dsn = make_database()
    apply_migrations(owner_dsn, row_level_security=True)
    role = f"uploads_app_{uuid.uuid4().hex[:8]}"
    owner = psycopg2.connect(owner_dsn)
    owner.autocommit = True
    with owner.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app-role-pw'")
        cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
        cur.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    yield owner_dsn, psycopg2.extensions.make_dsn(owner_dsn, user=role, password="app-role-pw")
    with owner.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        cur.execute(f"DROP OWNED BY {role}")
        cur.execute(f"DROP ROLE {role}")
    owner.close()


@pytest.fixture(scope="session")
def app_env(stack: tuple[LocalStack, dict[str, str]], database_url: str) -> dict[str, str]:
    """Return the environment that configures all four providers against the emulators.

    Development authentication (X-User-Id) and generous rate limits: the
    tests of tokens and limits make apps of their own.
    """
    return {
        **stack[1],
        "DATABASE_URL": database_url,
        "AUTH_MODE": "dev",
        "APP_ENV": "test",
        "RATE_LIMIT_PRESIGN": "100000/minute",
        "RATE_LIMIT_SAVE": "100000/minute",
        "RATE_LIMIT_FILES": "100000/minute",
        "RATE_LIMIT_PARTS": "100000/minute",
        # The tests of sweeping sweep when they choose (tests/integration/test_background_sweep.py).
        "SWEEP_INTERVAL_SECONDS": "0",
    }


@pytest.fixture
def make_app(app_env: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Return a factory of apps with some variables changed (None removes one)."""
    apps: list[Flask] = []

    def make(**overrides: str | None) -> Flask:
        env: dict[str, Any] = {**app_env, **overrides}
        env = {k: v for k, v in env.items() if v is not None}
        app = create_app(env)
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        close_app(app)


def close_app(app: Flask) -> None:
    """Write what the app still has queued, stop its writer, close its connections."""
    recorder(app).close(timeout=3)
    sweeper(app).stop()
    get_database(app).close()


_SESSION_APPS: list[Flask] = []


@pytest.fixture(scope="session")
def app(app_env: dict[str, str]) -> Iterator[Flask]:
    """Return the app configured for all four providers."""
    application = create_app(app_env)
    application.config["TESTING"] = True
    _SESSION_APPS.append(application)
    yield application
    close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Return a test client for ``app``."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    """Return a CLI runner for ``app``."""
    return app.test_cli_runner()


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """Return a direct connection to the test database, for assertions."""
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _empty_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start every test that uses the shared database with empty tables."""
    if "database_url" not in request.fixturenames:
        yield
        return
    dsn = request.getfixturevalue("database_url")
    # Nothing an earlier test presigned may land in this test's tables.
    for app in _SESSION_APPS:
        recorder(app).flush(timeout=10)
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "TRUNCATE s3_files, r2_files, b2_files, azure_files, pending_uploads, deleted_files"
            " RESTART IDENTITY"
        )
    conn.close()
    yield


@pytest.fixture
def stack_services(stack: tuple[LocalStack, dict[str, str]]) -> LocalStack:
    """Return the running emulators, for direct checks on buckets."""
    return stack[0]


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the presign-record writer retry a failed batch within 50 ms instead of seconds."""
    monkeypatch.setattr(recorder_module, "MAX_BACKOFF_SECONDS", 0.05)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Start Debian's tinyproxy on a free port; yield its URL and its log."""
    proxy = Tinyproxy(tmp_path / "tinyproxy").start()
    yield proxy.url, proxy.log
    proxy.stop()

"""A PostgreSQL that crashes, is killed or restarts under a warm pool: 503 while down, never 500."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app import create_app
from app.components import get_database
from app.db import DatabaseUnavailable, _run_with_retry
from app.migrations import apply_migrations
from devstack.services import NetworkPostgres
from tests.conftest import close_app
from tests.helpers import presign, put, recorder, save

POOL_SIZE = 4


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkPostgres]:
    server = NetworkPostgres(Path(tmp_path_factory.mktemp("outage-pg")))
    server.start()
    apply_migrations(server.url())
    yield server
    server.stop()


@pytest.fixture
def outage_app(postgres: NetworkPostgres, app_env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(
        {
            **app_env,
            "DATABASE_URL": postgres.url(),
            "DB_POOL_SIZE": str(POOL_SIZE),
            "DB_CONNECT_TIMEOUT_SECONDS": "1",
        }
    )
    yield app
    close_app(app)


def _warm_pool(app: Flask) -> None:
    """Leave every connection of the pool open and idle, as after a busy moment."""
    assert recorder(app).flush(timeout=10)
    database = get_database(app)
    held = [database.borrow() for _ in range(POOL_SIZE)]
    for conn in held:
        database.give_back(conn)


def _uploaded(app: Flask, name: str) -> str:
    presigned = presign(app.test_client(), "s3", name, file_size=4)
    assert put(presigned, b"data").status_code == 200
    return str(presigned["objectKey"])


def _kill_postmaster(postgres: NetworkPostgres) -> None:
    pid_file = postgres.data_dir / "pgdata" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def _start_again(postgres: NetworkPostgres) -> None:
    # After a SIGKILL the orphaned backends take a moment to notice and exit;
    # until they have, the new postmaster refuses their shared memory.
    deadline = time.monotonic() + 20
    while True:
        try:
            postgres.start()
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == "2"
    assert response.get_json() == {"success": False, "error": "database unavailable, try again shortly"}


@pytest.mark.integration
@pytest.mark.parametrize("how", ["immediate", "sigkill"])
def test_a_crashed_database_answers_503_never_500_and_the_first_request_after_succeeds(
    postgres: NetworkPostgres, outage_app: Flask, how: str
) -> None:
    client = outage_app.test_client()
    key = _uploaded(outage_app, f"{how}.txt")
    _warm_pool(outage_app)

    if how == "immediate":
        postgres.stop(mode="immediate")
    else:
        _kill_postmaster(postgres)
        time.sleep(0.5)  # the backends notice the postmaster is gone and close their sockets

    _assert_unavailable(save(client, "s3", key))
    _assert_unavailable(client.get("/s3/files"))

    _start_again(postgres)
    saved = save(client, "s3", key)
    assert saved.status_code == 201, saved.get_json()
    assert client.get("/s3/files").get_json()["files"][0]["objectKey"] == key


@pytest.mark.integration
def test_after_a_fast_restart_no_request_fails(postgres: NetworkPostgres, outage_app: Flask) -> None:
    client = outage_app.test_client()
    keys = [_uploaded(outage_app, f"restart-{n}.txt") for n in range(3)]
    _warm_pool(outage_app)

    postgres.stop(mode="fast")
    _start_again(postgres)

    # Every idle connection died in the restart; the server is back, so none may show.
    statuses = [save(client, "s3", key).status_code for key in keys]
    statuses += [client.get("/s3/files").status_code for _ in range(POOL_SIZE)]
    assert statuses == [201, 201, 201] + [200] * POOL_SIZE


@pytest.mark.integration
def test_a_backend_killed_under_a_borrowed_connection_is_retried_not_raised(
    postgres: NetworkPostgres, outage_app: Flask
) -> None:
    # The poll before lending cannot see this one: the backend dies after the borrow,
    # so the failure surfaces from execute, as whatever psycopg2 makes of it.
    database = get_database(outage_app)
    victim = database.borrow()
    with victim.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        row = cur.fetchone()
    assert row is not None
    os.kill(int(row[0]), signal.SIGKILL)  # the postmaster then restarts every backend
    time.sleep(0.5)
    lent = [victim]

    def borrow() -> Any:
        return lent.pop() if lent else database.borrow()

    deadline = time.monotonic() + 20
    while True:
        try:
            result = _run_with_retry(
                lambda cur: (cur.execute("SELECT 1"), cur.fetchone())[1],
                borrow,
                lambda conn, broken: database.give_back(conn, discard=broken),
            )
            break
        except DatabaseUnavailable:
            # Crash recovery takes a moment; a 503 meanwhile is the right answer.
            assert time.monotonic() < deadline
            time.sleep(0.5)
    assert result == (1,)
    assert victim.closed != 0

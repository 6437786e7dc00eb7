"""When the database or a storage server misbehaves: clear 5xx answers, quickly, and recovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_database
from tests.helpers import presign, put, rows, save

pytestmark = pytest.mark.integration

GOOD = {"fileName": "a.txt", "contentType": "text/plain"}


def terminate_service_connections(db: psycopg2.extensions.connection) -> int:
    with db.cursor() as cur:
        cur.execute(
            """
            SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
            WHERE application_name = 'upload-service' AND datname = current_database()
            """
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


def test_broken_pooled_connection_is_replaced_and_request_retried(
    make_app: Callable[..., Flask], db: psycopg2.extensions.connection
) -> None:
    app = make_app(DB_POOL_SIZE="2")
    client = app.test_client()
    presigned = presign(client, "s3")  # leaves a pooled connection behind
    put(presigned, b"data")
    # What a database restart or a suspended Neon compute does to idle connections.
    assert terminate_service_connections(db) >= 1
    response = save(client, "s3", presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    assert len(rows(db, "s3")) == 1


def test_unreachable_database_answers_503_with_retry_after(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        DATABASE_URL="postgresql://postgres:pw-secret@127.0.0.1:1/nowhere", DB_CONNECT_TIMEOUT_SECONDS="1"
    )
    response = app.test_client().post("/s3/presign-upload", json=GOOD)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    body = response.get_json()
    assert body == {"success": False, "error": "database unavailable, try again shortly"}
    assert b"pw-secret" not in response.data


def test_exhausted_pool_answers_503_quickly(make_app: Callable[..., Flask]) -> None:
    app = make_app(DB_POOL_SIZE="1", DB_POOL_TIMEOUT_SECONDS="0.2")
    client = app.test_client()
    presigned = presign(client, "s3")
    put(presigned, b"waiting for a connection")
    database = get_database(app)
    held = database.borrow()
    try:
        started = time.monotonic()
        response = save(client, "s3", presigned["objectKey"])
        elapsed = time.monotonic() - started
    finally:
        database.give_back(held)
    assert response.status_code == 503
    assert response.get_json()["error"] == "database busy: no free connection, try again shortly"
    assert elapsed < 2
    # The slot came back: the next request succeeds.
    assert save(client, "s3", presigned["objectKey"]).status_code == 201


def test_statement_timeout_bounds_a_blocked_query(make_app: Callable[..., Flask], database_url: str) -> None:
    app = make_app(DB_STATEMENT_TIMEOUT_MS="200")
    client = app.test_client()
    presigned = presign(client, "s3")
    put(presigned, b"blocked")
    blocker = psycopg2.connect(database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE s3_files IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = save(client, "s3", presigned["objectKey"])
        elapsed = time.monotonic() - started
    finally:
        blocker.rollback()
        blocker.close()
    assert response.status_code == 503
    assert response.get_json()["error"] == "database query timed out, try again shortly"
    assert elapsed < 3
    assert save(client, "s3", presigned["objectKey"]).status_code == 201


@pytest.mark.parametrize(
    ("provider", "overrides"),
    [
        ("s3", {"S3_ENDPOINT_URL": "http://127.0.0.1:9"}),
        ("b2", {"B2_ENDPOINT_URL": "http://127.0.0.1:9"}),
        (
            "azure",
            {
                "AZURE_STORAGE_CONNECTION_STRING": (
                    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                    "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;"
                )
            },
        ),
    ],
)
def test_unreachable_storage_answers_502(
    make_app: Callable[..., Flask],
    db: psycopg2.extensions.connection,
    provider: str,
    overrides: dict[str, Any],
) -> None:
    app = make_app(STORAGE_MAX_ATTEMPTS="1", STORAGE_CONNECT_TIMEOUT_SECONDS="1", **overrides)
    client: FlaskClient = app.test_client()
    presigned = presign(client, provider)  # signing needs no network
    started = time.monotonic()
    response = save(client, provider, presigned["objectKey"])
    assert time.monotonic() - started < 10
    assert response.status_code == 502
    assert response.get_json() == {"success": False, "error": f"{provider} storage is unreachable, try again"}
    assert rows(db, provider) == []


@pytest.fixture
def silent_server() -> Any:
    """A TCP server that accepts connections and never answers."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_slow_storage_times_out_with_504_without_holding_a_database_connection(
    make_app: Callable[..., Flask], silent_server: str
) -> None:
    import threading

    app = make_app(
        S3_ENDPOINT_URL=silent_server,
        STORAGE_MAX_ATTEMPTS="1",
        STORAGE_READ_TIMEOUT_SECONDS="2",
        DB_POOL_SIZE="1",
        DB_POOL_TIMEOUT_SECONDS="0.5",
    )
    presigned = presign(app.test_client(), "s3")
    result: dict[str, Any] = {}

    def slow_save() -> None:
        response = save(app.test_client(), "s3", presigned["objectKey"])
        result["status"], result["body"] = response.status_code, response.get_json()

    worker = threading.Thread(target=slow_save)
    worker.start()
    time.sleep(0.5)  # the save is now waiting on the silent storage server
    # With a pool of one, this only works if the save gave its connection back.
    assert app.test_client().post("/s3/presign-upload", json=GOOD).status_code == 200
    worker.join(10)
    assert result["status"] == 504
    assert result["body"] == {"success": False, "error": "s3 storage did not answer in time, try again"}


def test_unmigrated_database_answers_503_naming_the_fix(
    make_app: Callable[..., Flask], make_database: Callable[[], str]
) -> None:
    app = make_app(DATABASE_URL=make_database())
    response = app.test_client().post("/s3/presign-upload", json=GOOD)
    assert response.status_code == 503
    assert (
        response.get_json()["error"]
        == "database schema is not up to date; the operator must apply migrations"
    )


@pytest.fixture
def failing_server() -> Any:
    """An HTTP server that answers 503 to everything, counting requests."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _fail(self) -> None:
            hits.append(self.command)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_PUT = do_DELETE = _fail

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_storage_5xx_is_retried_a_bounded_number_of_times_then_502(
    make_app: Callable[..., Flask], failing_server: tuple[str, list[str]], provider: str
) -> None:
    url, hits = failing_server
    overrides = (
        {"S3_ENDPOINT_URL": url}
        if provider == "s3"
        else {
            "AZURE_STORAGE_CONNECTION_STRING": (
                f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                f"BlobEndpoint={url}/devstoreaccount1;"
            )
        }
    )
    app = make_app(STORAGE_MAX_ATTEMPTS="3", **overrides)
    client = app.test_client()
    presigned = presign(client, provider)
    started = time.monotonic()
    response = save(client, provider, presigned["objectKey"])
    assert time.monotonic() - started < 15
    assert response.status_code == 502
    assert response.get_json() == {"success": False, "error": f"{provider} storage failed (503), try again"}
    assert len(hits) == 3

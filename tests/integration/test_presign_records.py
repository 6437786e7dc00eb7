"""Presign records: written behind presign's answer, in batches, and never needed to save."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_database, get_provider
from app.db import DatabaseUnavailable
from app.repository import FileRepository, PendingUpload
from app.uploads import recorder as recorder_module
from app.uploads.recorder import PendingRecorder
from tests.helpers import PROVIDERS, presign, put, recorder, rows, save

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def record(n: int, provider: str = "s3", user: str = "alice") -> PendingUpload:
    return PendingUpload(
        object_key=f"key-{n}",
        provider=provider,
        user_id=user,
        file_name=f"file-{n}.txt",
        content_type="text/plain",
        declared_size=n,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=5),
        saved_at=None,
    )


class FakeWriter:
    """A batch writer for unit tests: records what it got; can fail or block."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failures_left = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, batch: Sequence[PendingUpload]) -> None:
        self.entered.set()
        self.gate.wait()
        if self.failures_left:
            self.failures_left -= 1
            raise DatabaseUnavailable()
        self.batches.append([r.object_key for r in batch])


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recorder_module, "MAX_BACKOFF_SECONDS", 0.05)


# Units: the queue and its thread.


def test_every_record_is_written_once_in_order() -> None:
    writer = FakeWriter()
    queue = PendingRecorder(writer)
    for n in range(1200):
        queue.record(record(n))
    assert queue.flush(timeout=10)
    written = [key for batch in writer.batches for key in batch]
    assert written == [f"key-{n}" for n in range(1200)]
    assert all(len(batch) <= recorder_module.BATCH_SIZE for batch in writer.batches)
    assert queue.queued == 0
    assert queue.close()


def test_records_queued_while_the_writer_is_busy_go_in_one_batch() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    queue = PendingRecorder(writer)
    queue.record(record(0))
    assert writer.entered.wait(5)  # taken by the writer, which now waits at the gate
    for n in range(1, 50):
        queue.record(record(n))
    writer.gate.set()
    assert queue.flush(timeout=10)
    assert [len(batch) for batch in writer.batches] == [1, 49]
    queue.close()


def test_a_failed_batch_is_kept_and_retried_in_order(fast_retries: None) -> None:
    writer = FakeWriter()
    writer.failures_left = 3
    queue = PendingRecorder(writer)
    for n in range(10):
        queue.record(record(n))
    assert queue.flush(timeout=10)
    assert [key for batch in writer.batches for key in batch] == [f"key-{n}" for n in range(10)]
    queue.close()


def test_a_full_queue_refuses_with_503() -> None:
    writer = FakeWriter()
    writer.gate.clear()
    queue = PendingRecorder(writer, max_queued=3)
    queue.record(record(0))
    assert writer.entered.wait(5)  # in flight
    for n in range(1, 4):
        queue.record(record(n))
    with pytest.raises(DatabaseUnavailable) as refused:
        queue.record(record(4))
    assert refused.value.status == 503
    assert refused.value.message == "too many uploads waiting to be recorded; try again shortly"
    assert refused.value.headers == {"Retry-After": "2"}
    assert not queue.flush(timeout=0.2)  # stuck behind the gate: flush says so
    writer.gate.set()
    assert queue.close()
    assert sum(len(batch) for batch in writer.batches) == 4


def test_close_stops_the_thread_and_a_new_record_starts_another() -> None:
    writer = FakeWriter()
    queue = PendingRecorder(writer)
    queue.record(record(0))
    first = queue._thread
    assert first is not None and first.is_alive()
    assert queue.close()
    assert not first.is_alive()
    queue.record(record(1))
    assert queue._thread is not None and queue._thread is not first
    assert queue.close()
    assert [key for batch in writer.batches for key in batch] == ["key-0", "key-1"]


# Against PostgreSQL.


@pytest.fixture
def repo(app: Flask) -> FileRepository:
    return FileRepository(get_database(app).run)


def pending_rows(db: psycopg2.extensions.connection) -> list[dict[str, Any]]:
    with db.cursor() as cur:
        cur.execute("SELECT * FROM pending_uploads ORDER BY object_key")
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_presign_records_land_with_the_presign_time(
    client: FlaskClient, app: Flask, db: psycopg2.extensions.connection
) -> None:
    before = datetime.now(UTC)
    issued = {p: presign(client, p, f"{p}.txt", "text/plain", file_size=3, user="alice") for p in PROVIDERS}
    after = datetime.now(UTC)
    assert recorder(app).flush()
    found = {r["object_key"]: r for r in pending_rows(db)}
    assert set(found) == {answer["objectKey"] for answer in issued.values()}
    for provider, answer in issued.items():
        row = found[answer["objectKey"]]
        assert (row["provider"], row["user_id"], row["file_name"]) == (provider, "alice", f"{provider}.txt")
        assert (row["content_type"], row["declared_size"], row["saved_at"]) == ("text/plain", 3, None)
        assert before <= row["created_at"] <= after
        assert row["expires_at"] > after


def test_a_record_the_table_refuses_is_dropped_and_the_rest_are_written(
    repo: FileRepository, db: psycopg2.extensions.connection
) -> None:
    queue = PendingRecorder(repo.record_pending_batch)
    queue.record(record(1))
    queue.record(record(2, provider="not-a-provider"))  # breaks the provider CHECK
    queue.record(record(3))
    assert queue.close()
    assert [r["object_key"] for r in pending_rows(db)] == ["key-1", "key-3"]


def test_records_wait_out_a_locked_table_and_then_land(
    repo: FileRepository, db: psycopg2.extensions.connection, database_url: str, fast_retries: None
) -> None:
    blocker = psycopg2.connect(database_url)
    try:
        blocker.cursor().execute("LOCK TABLE pending_uploads IN ACCESS EXCLUSIVE MODE")
        queue = PendingRecorder(repo.record_pending_batch)
        for n in range(5):
            queue.record(record(n))
        assert not queue.flush(timeout=0.5)
    finally:
        blocker.rollback()
        blocker.close()
    assert queue.close(timeout=20)
    assert [r["object_key"] for r in pending_rows(db)] == [f"key-{n}" for n in range(5)]


def test_writing_a_batch_twice_keeps_one_row_per_key(
    repo: FileRepository, db: psycopg2.extensions.connection
) -> None:
    # A connection can break after the server committed: the batch is sent again.
    repo.record_pending_batch([record(1), record(2)])
    repo.record_pending_batch([record(1), record(2), record(3)])
    assert [r["object_key"] for r in pending_rows(db)] == ["key-1", "key-2", "key-3"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_save_does_not_wait_for_the_presign_record(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    gate = threading.Event()
    queue = recorder(app)
    original = queue._write_batch

    def held_back(batch: Sequence[PendingUpload]) -> None:
        gate.wait(10)
        original(batch)

    queue._write_batch = held_back  # type: ignore[method-assign]
    try:
        presigned = presign(client, provider, user="alice")
        put(presigned, b"saved before its record")
        response = save(client, provider, presigned["objectKey"], user="alice")
        assert response.status_code == 201
        assert save(client, provider, presigned["objectKey"], user="bob").status_code == 403
        # Saving wrote the record itself, marked saved, so a sweep will never take it.
        [pending] = pending_rows(db)
        assert (pending["object_key"], pending["user_id"]) == (presigned["objectKey"], "alice")
        assert pending["saved_at"] is not None
    finally:
        gate.set()
        queue._write_batch = original  # type: ignore[method-assign]
    assert queue.flush()
    # The late batch found the record already there and left it alone.
    [pending] = pending_rows(db)
    assert pending["saved_at"] is not None
    assert len(rows(db, provider)) == 1


def test_a_key_in_the_guides_form_is_saved_by_its_presign_record(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    # A key issued before keys carried tags: only its record says whose it is.
    key = f"{uuid.uuid4()}-old.txt"
    db.cursor().execute(
        "INSERT INTO pending_uploads (object_key, provider, user_id, file_name, content_type, expires_at)"
        " VALUES (%s, 's3', 'alice', 'old.txt', 'text/plain', now() + interval '5 minutes')",
        (key,),
    )
    with app.app_context():
        upload = get_provider("s3").presign_upload(key, "text/plain", 3, 300)
    assert requests.put(upload.url, data=b"old", headers=upload.headers, timeout=30).ok
    response = save(client, "s3", key, user="bob")
    assert response.status_code == 403
    assert response.get_json()["error"] == "objectKey was issued to another user"
    assert save(client, "s3", key, user="alice").status_code == 201
    assert [r["object_key"] for r in rows(db, "s3")] == [key]


def test_a_tagged_key_from_another_deployment_is_not_yours(client: FlaskClient) -> None:
    # Right form, wrong secret (or made up): refused without a lookup.
    response = save(client, "s3", "0" * 40 + "-made-up.txt")
    assert response.status_code == 403
    assert response.get_json()["error"] == "objectKey was not issued to this user"


def test_presign_without_the_key_secret_says_migrations_are_missing(
    make_app: Callable[..., Flask], make_database: Callable[[], str]
) -> None:
    from app.migrations import apply_migrations

    dsn = make_database()
    apply_migrations(dsn)
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM service_secrets")
    conn.close()
    response = (
        make_app(DATABASE_URL=dsn)
        .test_client()
        .post("/s3/presign-upload", json={"fileName": "a.txt", "contentType": "text/plain"})
    )
    assert response.status_code == 503
    assert response.get_json()["error"] == (
        "database schema is not up to date; the operator must apply migrations"
    )


def test_the_key_secret_is_generated_once_per_database(make_database: Callable[[], str]) -> None:
    from app.migrations import apply_migrations

    secrets = []
    for _ in range(2):
        dsn = make_database()
        apply_migrations(dsn)
        apply_migrations(dsn)
        conn = psycopg2.connect(dsn)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT secret FROM service_secrets WHERE name = 'object-key'")
            fetched = cur.fetchall()
        conn.close()
        assert len(fetched) == 1
        secrets.append(bytes(fetched[0][0]))
    assert all(len(secret) == 32 for secret in secrets)
    assert secrets[0] != secrets[1]

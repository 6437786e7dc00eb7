"""Presign records: written behind presign's answer, in batches, and never needed to save."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_database, get_provider
from app.repository import FileRepository, PendingUpload
from app.uploads.recorder import PendingRecorder
from tests.helpers import PROVIDERS, pending_record, presign, put, recorder, rows, save


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
    queue.record(pending_record(1))
    queue.record(pending_record(2, provider="not-a-provider"))  # breaks the provider CHECK
    queue.record(pending_record(3))
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
            queue.record(pending_record(n))
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
    repo.record_pending_batch([pending_record(1), pending_record(2)])
    repo.record_pending_batch([pending_record(1), pending_record(2), pending_record(3)])
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

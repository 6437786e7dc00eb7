"""`flask storage sweep`: abandoned uploads go, saved ones stay, racing sweepers split the work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from xml.etree import ElementTree

import psycopg2
import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from app.maintenance.durations import format_duration, parse_duration
from app.maintenance.sweep import SweepReport, sweep
from app.repository import MaintenanceRepository
from tests.helpers import PROVIDERS, presign, put, recorder, save, send_to, upload

pytestmark = pytest.mark.integration


def abandon(client: FlaskClient, provider: str, data: bytes = b"never saved") -> str:
    """Presign and upload a file, and never save it; return its key."""
    presigned = presign(client, provider, "abandoned.txt", "text/plain", file_size=len(data))
    assert put(presigned, data).status_code in (200, 201)
    key: str = presigned["objectKey"]
    return key


def exists(app: Flask, provider: str, key: str) -> bool:
    with app.app_context():
        return get_provider(provider).head(key) is not None


def expire_urls(db: psycopg2.extensions.connection) -> None:
    """Move every presign record past its URL's expiry, as time would (a sweep takes no key before)."""
    with db.cursor() as cur:
        cur.execute("UPDATE pending_uploads SET expires_at = now() - interval '1 second'")


def pending(db: psycopg2.extensions.connection, key: str) -> tuple[object, object, object] | None:
    with db.cursor() as cur:
        cur.execute(
            "SELECT saved_at, sweep_claimed_at, swept_at FROM pending_uploads WHERE object_key = %s", (key,)
        )
        row = cur.fetchone()
    return (row[0], row[1], row[2]) if row else None


def test_sweep_deletes_abandoned_uploads_and_keeps_saved_ones(
    app: Flask, client: FlaskClient, runner: object, db: psycopg2.extensions.connection
) -> None:
    abandoned = {provider: abandon(client, provider) for provider in PROVIDERS}
    never_uploaded = presign(client, "s3", "ghost.txt")["objectKey"]
    kept = {provider: upload(client, provider, b"saved")["objectKey"] for provider in PROVIDERS}
    assert recorder(app).flush()
    expire_urls(db)

    result = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.output
    assert "abandoned uploads presigned more than 0s ago and never saved:" in result.output
    assert "s3        2      0" in result.output  # the uploaded one and the one never uploaded
    for provider in ("r2", "b2", "azure"):
        assert f"{provider:<8}  1      0" in result.output

    for provider, key in abandoned.items():
        assert not exists(app, provider, key)
        state = pending(db, key)
        assert state is not None and state[0] is None and state[2] is not None  # swept, not saved
    assert pending(db, never_uploaded) is not None
    for provider, key in kept.items():
        assert exists(app, provider, key)

    again = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert again.exit_code == 0
    assert "s3        0      0" in again.output


def test_sweep_leaves_uploads_younger_than_the_cut_off(
    app: Flask, client: FlaskClient, runner: object
) -> None:
    key = abandon(client, "s3")
    assert recorder(app).flush()
    result = runner.invoke(args=["storage", "sweep"])  # type: ignore[attr-defined]  # default 24h
    assert result.exit_code == 0
    assert "more than 1d ago" in result.output
    assert "s3        0      0" in result.output
    assert exists(app, "s3", key)


def test_a_save_after_the_sweep_claimed_the_key_is_refused_with_410(
    app: Flask, client: FlaskClient, database_url: str, db: psycopg2.extensions.connection
) -> None:
    key = abandon(client, "s3")
    assert recorder(app).flush()
    expire_urls(db)
    # A sweeper claims the key (the moment it commits, before it deletes the object) ...
    conn = psycopg2.connect(database_url)
    try:
        claimed = MaintenanceRepository(conn).claim_abandoned(["s3"], 0, 10, 900)
    finally:
        conn.close()
    assert claimed == [(key, "s3")]
    # ... and the owner's save, whose HEAD still finds the object, is refused, with no row written.
    response = save(client, "s3", key)
    assert response.status_code == 410
    assert response.get_json() == {
        "success": False,
        "error": "objectKey was not saved in time and its upload was cleaned up as abandoned; "
        "presign the file again",
    }
    assert client.get("/s3/files").get_json()["files"] == []


def test_a_save_that_lands_first_keeps_its_object(
    app: Flask, client: FlaskClient, runner: object, db: psycopg2.extensions.connection
) -> None:
    key = abandon(client, "azure")
    assert recorder(app).flush()
    assert save(client, "azure", key).status_code == 201
    expire_urls(db)
    result = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert "azure     0      0" in result.output
    assert exists(app, "azure", key)


def test_racing_sweeps_share_the_work_and_never_repeat_it(
    app: Flask, client: FlaskClient, database_url: str, db: psycopg2.extensions.connection
) -> None:
    keys = [abandon(client, "r2", b"%d" % i) for i in range(60)]
    assert recorder(app).flush()
    expire_urls(db)
    with app.app_context():
        providers = {"r2": get_provider("r2")}
    reports: list[SweepReport] = []
    start = threading.Barrier(2)

    def run() -> None:
        conn = psycopg2.connect(database_url)
        try:
            start.wait()
            reports.append(sweep(MaintenanceRepository(conn), providers, 0, batch_size=7))
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(reports) == 2
    # Every upload swept exactly once between them (a repeat would count twice).
    assert sum(r.swept["r2"] for r in reports) == len(keys)
    assert all(r.total_failed == 0 for r in reports)
    assert not any(exists(app, "r2", key) for key in keys)


def test_sweep_keeps_its_claim_when_storage_fails_and_exits_1(
    make_app: Callable[..., Flask], app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    key = abandon(client, "s3")
    assert recorder(app).flush()
    expire_urls(db)
    broken = make_app(S3_ENDPOINT_URL="http://127.0.0.1:9", STORAGE_MAX_ATTEMPTS="1")
    result = broken.test_cli_runner().invoke(args=["storage", "sweep", "--older-than", "0s"])
    assert result.exit_code == 1
    assert "s3        0      1" in result.output
    assert "1 objects could not be deleted or uploads aborted; a later sweep retries them" in result.output
    assert "s3: could not list multipart uploads: s3 storage is unreachable, try again" in result.output
    state = pending(db, key)
    assert state is not None and state[1] is not None and state[2] is None  # claimed, not swept
    assert exists(app, "s3", key)
    assert save(client, "s3", key).status_code == 410


def test_swept_records_are_forgotten_once_their_urls_expired(
    make_app: Callable[..., Flask], database_url: str, db: psycopg2.extensions.connection
) -> None:
    short = make_app(UPLOAD_URL_EXPIRES_SECONDS="1")
    client = short.test_client()
    # Presigned and never uploaded: a 1-second URL may expire before a PUT on a busy machine.
    key = presign(client, "b2", "abandoned.txt")["objectKey"]
    assert recorder(short).flush()
    with short.app_context():
        providers = {"b2": get_provider("b2")}
    conn = psycopg2.connect(database_url)
    try:
        repo = MaintenanceRepository(conn)
        time.sleep(1.1)  # the URL expires
        first = sweep(repo, providers, 0, keep_swept_seconds=3600)
        assert first.swept == {"b2": 1}
        assert first.forgotten == 0  # kept a while after the sweep
        second = sweep(repo, providers, 0, keep_swept_seconds=0)
    finally:
        conn.close()
    assert second.forgotten == 1
    assert pending(db, key) is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_whose_url_still_works_is_never_swept(
    app: Flask, client: FlaskClient, runner: object, db: psycopg2.extensions.connection, provider: str
) -> None:
    # Presigned long ago as far as --older-than 0s can tell, but its URL is still valid.
    presigned = presign(client, provider, "late.txt", "text/plain", file_size=4)
    assert recorder(app).flush()
    result = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.output
    assert f"{provider:<8}  0      0" in result.output
    # The upload arrives later, with the URL issued, and is saved.
    assert put(presigned, b"late").status_code in (200, 201)
    assert save(client, provider, presigned["objectKey"]).status_code == 201


def test_an_azure_sas_for_a_large_file_keeps_its_key_for_as_long_as_it_lives(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, database_url: str
) -> None:
    # A large file's SAS outlives UPLOAD_URL_EXPIRES_SECONDS (sized for a slow link).
    presigned = presign(client, "azure", "big.bin", "application/octet-stream", file_size=90 * 1024**2)
    assert recorder(app).flush()
    with db.cursor() as cur:
        cur.execute(
            "UPDATE pending_uploads SET created_at = now() - interval '1 hour' WHERE object_key = %s",
            (presigned["objectKey"],),
        )
    with app.app_context():
        providers = {"azure": get_provider("azure")}
    conn = psycopg2.connect(database_url)
    try:
        report = sweep(MaintenanceRepository(conn), providers, 30 * 60)
    finally:
        conn.close()
    assert report.swept == {"azure": 0}
    assert pending(db, presigned["objectKey"]) == (None, None, None)


def _swept_before_its_put_landed(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, database_url: str
) -> str:
    """Presign, let the sweep take the key with nothing uploaded yet, then land the PUT."""
    presigned = presign(client, "s3", "slow.txt", "text/plain", file_size=4)
    assert recorder(app).flush()
    expire_urls(db)  # as far as the sweep can tell; the PUT itself began before the expiry
    with app.app_context():
        providers = {"s3": get_provider("s3")}
    conn = psycopg2.connect(database_url)
    try:
        assert sweep(MaintenanceRepository(conn), providers, 0).swept == {"s3": 1}
    finally:
        conn.close()
    assert put(presigned, b"slow").status_code == 200
    key: str = presigned["objectKey"]
    assert exists(app, "s3", key)
    return key


def test_an_object_landing_after_its_key_was_swept_is_deleted_by_the_save_that_finds_it(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, database_url: str
) -> None:
    key = _swept_before_its_put_landed(app, client, db, database_url)
    response = save(client, "s3", key)
    assert response.status_code == 410
    assert not exists(app, "s3", key)


def test_an_object_landing_after_its_key_was_swept_is_deleted_before_the_record_is_forgotten(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, database_url: str
) -> None:
    key = _swept_before_its_put_landed(app, client, db, database_url)
    with app.app_context():
        providers = {"s3": get_provider("s3")}
    conn = psycopg2.connect(database_url)
    try:
        report = sweep(MaintenanceRepository(conn), providers, 0, keep_swept_seconds=0)
    finally:
        conn.close()
    assert report.forgotten == 1
    assert pending(db, key) is None
    assert not exists(app, "s3", key)


@pytest.mark.parametrize("value", ["soon", "-1h", "1x", "", "h"])
def test_sweep_refuses_a_bad_duration(runner: object, value: str) -> None:
    result = runner.invoke(args=["storage", "sweep", "--older-than", value])  # type: ignore[attr-defined]
    assert result.exit_code == 2
    assert f"{value!r} is not a duration such as 30m, 24h or 0s" in result.output


def test_durations_read_and_print_alike() -> None:
    assert parse_duration("0s") == 0
    assert parse_duration("30m") == 1800
    assert parse_duration("24h") == 86400
    assert parse_duration("1d2h3m4s") == 93784
    with pytest.raises(ValueError):
        parse_duration("90")
    for seconds in (0, 59, 3600, 86400, 93784):
        assert parse_duration(format_duration(seconds)) == seconds


def test_sweep_aborts_multipart_uploads_started_before_the_cut_off(
    app: Flask, client: FlaskClient, runner: object, db: psycopg2.extensions.connection
) -> None:
    created = client.post(
        "/b2/s3/multipart", json={"filename": "big.bin", "type": "application/octet-stream"}
    )
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    url = client.get(f"/b2/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()["url"]
    assert requests.put(url, data=b"part one", timeout=10).status_code == 200
    assert recorder(app).flush()
    expire_urls(db)
    with app.app_context():
        b2 = get_provider("b2")
        assert any(u.upload_id == upload_id for u in b2.list_multipart_uploads())

    young = runner.invoke(args=["storage", "sweep"])  # type: ignore[attr-defined]
    assert young.exit_code == 0
    with app.app_context():
        assert any(u.upload_id == upload_id for u in b2.list_multipart_uploads())

    result = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.output
    assert "multipart aborted" in result.output
    [b2_row] = [line for line in result.output.splitlines() if line.startswith("b2 ")]
    assert int(b2_row.split()[3]) >= 1
    with app.app_context():
        assert all(u.upload_id != upload_id for u in b2.list_multipart_uploads())


def test_a_multipart_upload_whose_parts_are_still_being_signed_is_never_swept(
    app: Flask, client: FlaskClient, runner: object, db: psycopg2.extensions.connection
) -> None:
    created = client.post(
        "/s3/s3/sign", json={"method": "POST", "key": "slow.bin", "contentType": "application/octet-stream"}
    ).get_json()
    key = created["key"]
    answer = send_to(client, "POST", created["url"], headers=created["headers"])
    root = ElementTree.fromstring(answer.text)  # noqa: S314 - the service's own answer
    [upload_id] = [el.text for el in root.iter() if el.tag.endswith("UploadId")]
    assert recorder(app).flush()
    expire_urls(db)  # the create URL has long expired; the upload goes on
    part = client.post(
        "/s3/s3/sign", json={"method": "PUT", "key": key, "uploadId": upload_id, "partNumber": 1}
    )
    assert recorder(app).flush()  # signing the part pushed the key's expiry out

    result = runner.invoke(args=["storage", "sweep", "--older-than", "0s"])  # type: ignore[attr-defined]
    assert result.exit_code == 0, result.output
    assert "s3        0      0" in result.output
    etag = requests.put(part.get_json()["url"], data=b"only part", timeout=30).headers["ETag"]
    complete = client.post("/s3/s3/sign", json={"method": "POST", "key": key, "uploadId": upload_id})
    body = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    )
    assert send_to(client, "POST", complete.get_json()["url"], data=body).status_code == 200
    assert save(client, "s3", key).status_code == 201

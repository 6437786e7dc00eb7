"""The service sweeps by itself: an unsaved upload is gone soon after its URL expires, with no operator.

The URLs are signed for the usual lifetime and then expired in the database,
as time would expire them: a real one-second URL would race a loaded machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg2.extensions
import pytest
import requests
from flask import Flask

from app.components import get_provider
from tests.helpers import presign, put, recorder, save, staged

pytestmark = pytest.mark.integration

CLEANED_UP = "objectKey's upload was cleaned up (abandoned, or refused at save); presign the file again"
SWEEPING = {"SWEEP_INTERVAL_SECONDS": "0.3", "SWEEP_GRACE_SECONDS": "0"}


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def expire(app: Flask, db: psycopg2.extensions.connection, key: str, seconds_ago: int = 1) -> None:
    """Put the key's last URL ``seconds_ago`` past its expiry, as time would (presigned an hour ago)."""
    assert recorder(app).flush()
    with db.cursor() as cur:
        cur.execute(
            "UPDATE pending_uploads SET expires_at = now() - make_interval(secs => %s),"
            " created_at = now() - interval '1 hour' WHERE object_key = %s",
            (seconds_ago, key),
        )
        assert cur.rowcount == 1


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_an_unsaved_upload_is_removed_by_the_service_soon_after_its_url_expires(
    make_app: Callable[..., Flask], db: psycopg2.extensions.connection, provider: str
) -> None:
    app = make_app(**SWEEPING)
    client = app.test_client()
    abandoned = presign(client, provider, "big.bin", "application/octet-stream")
    assert put(abandoned, b"x" * 4096).status_code in (200, 201)
    kept = presign(client, provider, "kept.txt", "text/plain")
    assert put(kept, b"saved in time").status_code in (200, 201)
    assert save(client, provider, kept["objectKey"]).status_code == 201
    key = abandoned["objectKey"]
    expire(app, db, key)
    expire(app, db, kept["objectKey"])

    with app.app_context():
        storage = get_provider(provider)
        # The requests above started this process's sweeper; nobody runs a command.
        # (An Azure upload not in one Put Blob is staged apart until it is saved: both go.)
        assert wait_until(lambda: storage.head(key) is None and staged(storage, key) is None)
        late = save(client, provider, key)
        assert (late.status_code, late.get_json()["error"]) == (410, CLEANED_UP)
        time.sleep(1.0)  # a few more rounds: a saved upload is never taken
        assert storage.head(kept["objectKey"]) is not None


def test_an_unfinished_upload_in_parts_is_aborted_by_the_service(
    make_app: Callable[..., Flask], db: psycopg2.extensions.connection
) -> None:
    # Only uploads started more than a URL's lifetime plus the grace ago are aborted (the
    # storage's own start time, which the test cannot move): 3 s here.
    app = make_app(**SWEEPING, UPLOAD_URL_EXPIRES_SECONDS="3")
    client = app.test_client()
    created = client.post("/r2/s3/multipart", json={"filename": "a.bin", "type": "application/octet-stream"})
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    url = client.get(f"/r2/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()["url"]
    assert requests.put(url, data=b"a part that is never completed", timeout=30).status_code == 200
    expire(app, db, key)
    with app.app_context():
        storage = get_provider("r2")
        uploads = storage.list_multipart_uploads  # type: ignore[attr-defined]
        assert wait_until(lambda: all(u.upload_id != upload_id for u in uploads()))


def test_the_grace_leaves_time_to_save_after_the_url_expired(
    make_app: Callable[..., Flask], db: psycopg2.extensions.connection
) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0.3", SWEEP_GRACE_SECONDS="60")
    client = app.test_client()
    presigned = presign(client, "s3", "slow.txt", "text/plain")
    assert put(presigned, b"uploaded just in time").status_code == 200
    expire(app, db, presigned["objectKey"], seconds_ago=5)
    time.sleep(1.5)  # several rounds ran; the URL expired 5 s ago, well inside the grace
    saved = save(client, "s3", presigned["objectKey"])
    assert saved.status_code == 201, saved.get_json()


def test_the_sweeper_is_off_when_its_interval_is_zero(make_app: Callable[..., Flask]) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    sweeper = app.extensions["sweeper"]
    assert not sweeper.enabled and sweeper._thread is None

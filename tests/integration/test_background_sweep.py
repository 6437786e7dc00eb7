"""The service sweeps by itself: an unsaved upload is gone soon after its URL expires, with no operator."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import requests
from flask import Flask

from app.components import get_provider
from tests.helpers import presign, put, save

pytestmark = pytest.mark.integration

CLEANED_UP = "objectKey's upload was cleaned up (abandoned, or refused at save); presign the file again"


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.mark.parametrize("provider", ["s3", "azure"])
def test_an_unsaved_upload_is_removed_by_the_service_soon_after_its_url_expires(
    make_app: Callable[..., Flask], provider: str
) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0.5", SWEEP_GRACE_SECONDS="0", UPLOAD_URL_EXPIRES_SECONDS="1")
    client = app.test_client()
    abandoned = presign(client, provider, "big.bin", "application/octet-stream")
    assert put(abandoned, b"x" * 4096).status_code in (200, 201)
    kept = presign(client, provider, "kept.txt", "text/plain")
    assert put(kept, b"saved in time").status_code in (200, 201)
    assert save(client, provider, kept["objectKey"]).status_code == 201

    with app.app_context():
        storage = get_provider(provider)
        # The presign requests started this process's sweeper; nobody runs a command.
        key = abandoned["objectKey"]
        # (An Azure upload not in one Put Blob is staged apart until it is saved: both go.)
        assert wait_until(lambda: storage.head(key) is None and storage.head_staged(key) is None)
        late = save(client, provider, key)
        assert (late.status_code, late.get_json()["error"]) == (410, CLEANED_UP)
        time.sleep(1.5)  # a few more rounds: a saved upload is never taken
        assert storage.head(kept["objectKey"]) is not None


def test_an_unfinished_upload_in_parts_is_aborted_by_the_service(make_app: Callable[..., Flask]) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0.5", SWEEP_GRACE_SECONDS="0", UPLOAD_URL_EXPIRES_SECONDS="1")
    client = app.test_client()
    created = client.post("/r2/s3/multipart", json={"filename": "a.bin", "type": "application/octet-stream"})
    key, upload_id = created.get_json()["key"], created.get_json()["uploadId"]
    url = client.get(f"/r2/s3/multipart/{upload_id}/1", query_string={"key": key}).get_json()["url"]
    assert requests.put(url, data=b"a part that is never completed", timeout=30).status_code == 200
    with app.app_context():
        storage = get_provider("r2")
        assert wait_until(lambda: all(u.upload_id != upload_id for u in storage.list_multipart_uploads()))  # type: ignore[attr-defined]


def test_the_grace_leaves_time_to_save_after_the_url_expired(make_app: Callable[..., Flask]) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0.3", SWEEP_GRACE_SECONDS="60", UPLOAD_URL_EXPIRES_SECONDS="1")
    client = app.test_client()
    presigned = presign(client, "s3", "slow.txt", "text/plain")
    assert put(presigned, b"uploaded just in time").status_code == 200
    time.sleep(2.5)  # the URL expired, several rounds ran
    saved = save(client, "s3", presigned["objectKey"])
    assert saved.status_code == 201, saved.get_json()


def test_the_sweeper_is_off_when_its_interval_is_zero(make_app: Callable[..., Flask]) -> None:
    app = make_app(SWEEP_INTERVAL_SECONDS="0")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    sweeper = app.extensions["sweeper"]
    assert not sweeper.enabled and sweeper._thread is None

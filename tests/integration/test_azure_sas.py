"""Azure's SAS: one blob, create and write only, long enough for the declared size, blocks for large files."""

from __future__ import annotations

import os
import uuid
from typing import Any

import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import presign, put, recorder, save

pytestmark = pytest.mark.integration

MiB = 1024**2
# 21 MiB: five blocks of at most 5 MiB.
DATA = os.urandom(21 * MiB)
PARTS = [DATA[i : i + 5 * MiB] for i in range(0, len(DATA), 5 * MiB)]
GOOD = {"fileName": "a.txt", "contentType": "text/plain"}


def downloaded(client: FlaskClient, provider: str, file_id: int) -> bytes:
    url = client.get(f"/{provider}/files/{file_id}").get_json()["file"]["downloadUrl"]
    return requests.get(url, timeout=60).content


def test_azure_uploads_a_large_file_in_blocks_through_one_sas(client: FlaskClient) -> None:
    from azure.storage.blob import BlobClient, ContentSettings

    response = client.post(
        "/azure/presign-upload",
        json={"fileName": "big.bin", "contentType": "application/octet-stream", "fileSize": len(DATA)},
    )
    assert response.status_code == 200, response.get_json()
    presigned = response.get_json()
    # Put Block for each 5 MiB, then Put Block List, all through the same write-only SAS.
    blob = BlobClient.from_blob_url(presigned["sasUrl"])
    block_ids = [f"{n:06d}".encode().hex() for n in range(len(PARTS))]
    for block_id, part in zip(block_ids, PARTS, strict=True):
        blob.stage_block(block_id, part)
    blob.stage_block(block_ids[1], PARTS[1])  # a block sent again replaces itself
    blob.commit_block_list(
        block_ids, content_settings=ContentSettings(content_type="application/octet-stream")
    )

    saved = save(client, "azure", presigned["objectKey"])
    assert saved.status_code == 201, saved.get_json()
    assert saved.get_json()["file"]["size"] == len(DATA)
    assert downloaded(client, "azure", saved.get_json()["file"]["id"]) == DATA


def test_azure_sas_lives_long_enough_for_the_declared_size(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    from datetime import UTC, datetime

    small = client.post("/azure/presign-upload", json={"fileName": "a", "contentType": "a/b", "fileSize": 10})
    large = client.post(
        "/azure/presign-upload", json={"fileName": "a", "contentType": "a/b", "fileSize": 90 * MiB}
    )
    now = datetime.now(UTC)

    def lifetime(response: Any) -> float:
        return (
            datetime.fromisoformat(response.get_json()["expiresAt"].replace("Z", "+00:00")) - now
        ).total_seconds()

    assert 290 <= lifetime(small) <= 301  # UPLOAD_URL_EXPIRES_SECONDS
    assert 355 <= lifetime(large) <= 361  # 90 MiB at 256 KiB/s
    assert "sp=cw" in large.get_json()["sasUrl"]
    # The presign record outlives the SAS (a sweep forgets a swept key only once its URL is dead)
    # by as long as a PUT begun just before the expiry may still be landing at 2 Mbit/s.
    assert recorder(app).flush()
    with db.cursor() as cur:
        cur.execute(
            "SELECT expires_at FROM pending_uploads WHERE object_key = %s", (large.get_json()["objectKey"],)
        )
        (recorded,) = cur.fetchone()  # type: ignore[misc]
    sas_expiry = datetime.fromisoformat(large.get_json()["expiresAt"].replace("Z", "+00:00"))
    assert 359 <= (recorded - sas_expiry).total_seconds() <= 361


def test_azure_sas_is_scoped_to_one_blob_and_write_only(client: FlaskClient) -> None:
    presigned = presign(client, "azure", "mine.txt")
    url = presigned["presignedUrl"]
    assert put(presigned, b"mine").status_code == 201
    # The same SAS cannot read the blob back ...
    assert requests.get(url, timeout=10).status_code == 403
    # ... nor write a different blob.
    other_url = url.replace(presigned["objectKey"], f"{uuid.uuid4()}-other.txt")
    other = requests.put(other_url, data=b"x", headers=presigned["headers"], timeout=10)
    assert other.status_code == 403
    assert "sp=cw" in url
    assert "se=" in url


def test_azure_presigns_past_put_blobs_limit_because_the_sas_takes_blocks(make_app: Any) -> None:
    client = make_app(MAX_UPLOAD_BYTES=str(10 * 1024**3)).test_client()
    response = client.post("/azure/presign-upload", json={**GOOD, "fileSize": 5000 * 1024**2 + 1})
    assert response.status_code == 200

"""save-metadata checks what an upload's bytes are, for every provider: one ranged GET of 4 KiB."""

from __future__ import annotations

from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from tests import corpus
from tests.helpers import PROVIDERS, presign, put, rows, save, staged

pytestmark = pytest.mark.integration

ACCEPTED = [
    ("photo.png", "image/png", corpus.png(300, 300), "image/png"),
    ("photo.jpg", "image/jpeg", corpus.jpeg(), "image/jpeg"),
    ("report.pdf", "application/pdf", corpus.pdf(), "application/pdf"),
    ("archive.zip", "application/zip", corpus.zip_archive(), "application/zip"),
    ("notes.txt", "text/plain", corpus.TEXT, None),
    ("table.csv", "text/csv", corpus.CSV, None),
]


def uploaded(client: FlaskClient, provider: str, name: str, declared: str, data: bytes) -> dict[str, Any]:
    presigned = presign(client, provider, name, declared, file_size=len(data))
    assert put(presigned, data).status_code in (200, 201)
    return presigned


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("name", "declared", "data", "detected"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_real_files_are_saved_with_what_their_bytes_are(
    client: FlaskClient, provider: str, name: str, declared: str, data: bytes, detected: str | None
) -> None:
    presigned = uploaded(client, provider, name, declared, data)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    file = response.get_json()["file"]
    assert (file["contentType"], file["detectedContentType"], file["size"]) == (declared, detected, len(data))
    again = client.get(f"/{provider}/files/{file['id']}").get_json()["file"]
    assert again["detectedContentType"] == detected


REFUSED = [
    ("page.png", "image/png", corpus.HTML,
     "the uploaded file's bytes are text/html, content browsers run, but it was declared image/png; "
     "it was deleted"),
    ("drawing.png", "image/png", corpus.SVG,
     "the uploaded file's bytes are image/svg+xml, content browsers run, but it was declared image/png; "
     "it was deleted"),
    ("invoice.pdf", "application/pdf", corpus.pe_executable(),
     "the uploaded file's bytes are application/vnd.microsoft.portable-executable, not the application/pdf "
     "it was declared as; it was deleted"),
]  # fmt: skip


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("name", "declared", "data", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_disguised_files_are_refused_and_deleted(
    app: Flask,
    client: FlaskClient,
    db: psycopg2.extensions.connection,
    provider: str,
    name: str,
    declared: str,
    data: bytes,
    message: str,
) -> None:
    presigned = uploaded(client, provider, name, declared, data)
    response = save(client, provider, presigned["objectKey"])
    assert (response.status_code, response.get_json()["error"]) == (415, message)
    assert rows(db, provider) == []
    with app.app_context():
        storage = get_provider(provider)
        assert storage.head(presigned["objectKey"]) is None
        assert staged(storage, presigned["objectKey"]) is None


def test_bytes_the_allowlist_refuses_are_refused_whatever_the_declared_type(
    make_app: Any, db: psycopg2.extensions.connection
) -> None:
    client = make_app(ALLOWED_CONTENT_TYPES="image/*").test_client()
    presigned = uploaded(client, "s3", "cat.png", "image/png", corpus.zip_archive())
    response = save(client, "s3", presigned["objectKey"])
    assert (response.status_code, response.get_json()["error"]) == (
        415,
        "the uploaded file's bytes are application/zip, which is not allowed; it was deleted",
    )

"""Size and type limits, for all four providers, with real bytes PUT to the emulators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from tests import corpus
from tests.helpers import PROVIDERS, S3_FAMILY, presign, put, recorder, rows, save

pytestmark = pytest.mark.integration


def object_exists(app: Flask, provider: str, key: str) -> bool:
    with app.app_context():
        return get_provider(provider).head(key) is not None


@pytest.fixture
def small_app(make_app: Callable[..., Flask]) -> Flask:
    """An app that takes at most 10 bytes per file, images and PDFs only."""
    return make_app(MAX_UPLOAD_BYTES="10", ALLOWED_CONTENT_TYPES="image/*, application/pdf")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_presign_refuses_a_declared_size_over_the_limit(small_app: Flask, provider: str) -> None:
    response = small_app.test_client().post(
        f"/{provider}/presign-upload", json={"fileName": "a.png", "contentType": "image/png", "fileSize": 11}
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "fileSize 11 is over the 10 byte upload limit"


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("content_type", ["text/html", "application/x-msdownload", "image"])
def test_presign_refuses_types_not_allowed(small_app: Flask, provider: str, content_type: str) -> None:
    response = small_app.test_client().post(
        f"/{provider}/presign-upload", json={"fileName": "a.bin", "contentType": content_type}
    )
    if content_type == "image":
        assert response.status_code == 400
        assert response.get_json()["error"] == "contentType is not a valid media type such as image/png"
    else:
        assert response.status_code == 415
        assert response.get_json()["error"] == (
            f"contentType {content_type} is not allowed; allowed: image/*, application/pdf"
        )


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("content_type", ["image/png", "IMAGE/JPEG", "application/pdf"])
def test_presign_accepts_allowed_types(small_app: Flask, provider: str, content_type: str) -> None:
    presign(small_app.test_client(), provider, "a.x", content_type, file_size=4)


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_s3_family_storage_refuses_more_bytes_than_declared(small_app: Flask, provider: str) -> None:
    presigned = presign(small_app.test_client(), provider, "a.png", "image/png", file_size=10)
    assert put(presigned, b"x" * 11).status_code == 403
    assert not object_exists(small_app, provider, presigned["objectKey"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_undeclared_upload_over_the_limit_is_deleted_and_refused(
    small_app: Flask, db: psycopg2.extensions.connection, provider: str
) -> None:
    client: FlaskClient = small_app.test_client()
    # No fileSize: nothing in the signature bounds the length.
    presigned = presign(client, provider, "big.png", "image/png")
    assert put(presigned, b"x" * 50).status_code in (200, 201)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 413
    assert (
        response.get_json()["error"]
        == "the uploaded file is 50 bytes, over the 10 byte limit; it was deleted"
    )
    assert not object_exists(small_app, provider, presigned["objectKey"])
    assert rows(db, provider) == []


NOT_PRESIGNED = (
    "the uploaded file ({size} bytes, {type}) is not what objectKey was presigned for "
    "(its type, size or checksum differs); it was deleted"
)


@pytest.mark.parametrize(
    ("declared", "body", "stored_type", "status", "message"),
    [
        # An Azure SAS binds neither length nor type, so each PUT below succeeds.
        (4, b"x" * 9, "image/png", 422, NOT_PRESIGNED.format(size=9, type="image/png")),
        (8, b"x" * 3, "image/png", 422, NOT_PRESIGNED.format(size=3, type="image/png")),
        (4, b"GIF8", "image/gif", 422, NOT_PRESIGNED.format(size=4, type="image/gif")),
        (
            4,
            b"<b/>",
            "text/html",
            415,
            "the uploaded file's content type text/html is not allowed; "
            "allowed: image/*, application/pdf; it was deleted",
        ),
        (
            4,
            b"x" * 50,
            "image/png",
            413,
            "the uploaded file is 50 bytes, over the 10 byte limit; it was deleted",
        ),
    ],
)
@pytest.mark.parametrize("record", ["landed", "not yet landed"])
def test_an_azure_upload_that_is_not_what_was_presigned_gets_one_answer_whatever_the_timing(
    small_app: Flask,
    db: psycopg2.extensions.connection,
    declared: int,
    body: bytes,
    stored_type: str,
    status: int,
    message: str,
    record: str,
) -> None:
    client = small_app.test_client()
    presigned = presign(client, "azure", "a.png", "image/png", file_size=declared)
    assert put(presigned, body, **{"Content-Type": stored_type}).status_code == 201
    assert recorder(small_app).flush()
    if record == "not yet landed":
        # As when save-metadata comes within the write-behind delay, or on another replica.
        db.cursor().execute("DELETE FROM pending_uploads")
    response = save(client, "azure", presigned["objectKey"])
    assert (response.status_code, response.get_json()["error"]) == (status, message)
    assert not object_exists(small_app, "azure", presigned["objectKey"])
    assert rows(db, "azure") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upload_within_limits_is_recorded(
    small_app: Flask, db: psycopg2.extensions.connection, provider: str
) -> None:
    client = small_app.test_client()
    presigned: dict[str, Any] = presign(client, provider, "ok.pdf", "application/pdf", file_size=10)
    assert put(presigned, b"%PDF-1.7\n\n").status_code in (200, 201)
    assert save(client, provider, presigned["objectKey"]).status_code == 201
    assert len(rows(db, provider)) == 1


def test_a_refused_key_is_claimed_so_a_racing_save_can_never_record_its_deleted_object(
    app: Flask, db: psycopg2.extensions.connection
) -> None:
    from app.components import get_database
    from app.repository import AbandonedUpload, FileRepository, NewFile

    repo = FileRepository(get_database(app).run)
    client = app.test_client()
    refused = presign(client, "azure", "a.png", "image/png", file_size=4)["objectKey"]
    saved = upload_key(client)
    # The refusing save claims its key first (no presign record needed) ...
    assert repo.claim_refused("azure", refused, "user_123") is True
    # ... so a save racing it, whose HEAD saw a good object, inserts nothing.
    new = NewFile(refused, "u", "user_123", "a.png", "image/png", 4, "etag")
    with pytest.raises(AbandonedUpload):
        repo.save_file("azure", new)
    # A key a save recorded first is not claimed: its row and object stay.
    assert repo.claim_refused("azure", saved, "user_123") is False
    assert len(rows(db, "azure")) == 1


def upload_key(client: FlaskClient) -> str:
    presigned = presign(client, "azure", "ok.png", "image/png", file_size=len(corpus.png()))
    assert put(presigned, corpus.png()).status_code == 201
    assert save(client, "azure", presigned["objectKey"]).status_code == 201
    return str(presigned["objectKey"])

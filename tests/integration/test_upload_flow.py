"""The whole flow for each provider: presign, PUT to the emulator over HTTP, save, read the row."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import boto3
import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from tests import corpus
from tests.helpers import KEY_COLUMNS, PROVIDERS, S3_FAMILY, presign, put, rows, save

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upload_flow_records_real_size_and_type(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    data = b"hello from " + provider.encode()
    presigned = presign(client, provider, "report.txt", "text/plain", file_size=len(data))
    assert presigned["provider"] == provider
    assert presigned["method"] == "PUT"
    assert presigned["objectKey"].endswith("-report.txt")
    assert presigned["expiresAt"].endswith("Z")

    uploaded = put(presigned, data)
    assert uploaded.status_code in (200, 201), uploaded.text

    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    saved = response.get_json()["file"]
    assert saved["objectKey"] == presigned["objectKey"]
    assert saved["size"] == len(data)
    assert saved["contentType"] == "text/plain"
    assert saved["fileName"] == "report.txt"
    assert saved["fileUrl"] == presigned["publicFileUrl"]

    [row] = rows(db, provider)
    assert row[KEY_COLUMNS[provider]] == presigned["objectKey"]
    assert row["user_id"] == "user_123"
    assert row["size_bytes"] == len(data)
    assert row["content_type"] == "text/plain"
    assert row["etag"]
    assert row["file_url"] == presigned["publicFileUrl"]
    assert row["upload_timestamp"] is not None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_upload_flow_without_file_size_still_works(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider, "photo.png", "image/png")
    assert put(presigned, corpus.png()).status_code in (200, 201)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201
    assert response.get_json()["file"]["size"] == len(corpus.png())


@pytest.mark.parametrize("provider", PROVIDERS)
def test_save_metadata_twice_is_idempotent(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider)
    put(presigned, b"abc")
    first = save(client, provider, presigned["objectKey"])
    second = save(client, provider, presigned["objectKey"])
    assert first.status_code == 201
    assert second.status_code == 200
    assert same_row(second.get_json()["file"], first.get_json()["file"])
    assert len(rows(db, provider)) == 1


def same_row(file: dict[str, object], other: dict[str, object]) -> bool:
    """The same row: every field but the download link, which is signed afresh (its expiry moves)."""
    return {k: v for k, v in file.items() if k != "downloadUrl"} == {
        k: v for k, v in other.items() if k != "downloadUrl"
    }


@pytest.mark.parametrize("provider", PROVIDERS)
def test_saving_a_saved_key_again_answers_its_row_without_touching_storage(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider, file_size=3)
    put(presigned, b"abc")
    first = save(client, provider, presigned["objectKey"])
    assert first.status_code == 201
    # The object goes (or its storage is unreachable): the row still answers.
    with app.app_context():
        get_provider(provider).delete(presigned["objectKey"])
    again = save(client, provider, presigned["objectKey"])
    assert again.status_code == 200, again.get_json()
    assert same_row(again.get_json()["file"], first.get_json()["file"])
    assert len(rows(db, provider)) == 1


def test_saving_a_saved_azure_key_again_never_deletes_the_file(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    presigned = presign(client, "azure", "photo.png", "image/png", file_size=len(corpus.png()))
    assert put(presigned, corpus.png()).status_code == 201
    first = save(client, "azure", presigned["objectKey"])
    assert first.status_code == 201
    # The SAS is replayed with other bytes: the stored object no longer matches its presign.
    assert put(presigned, b"<html>", **{"Content-Type": "text/html"}).status_code == 201
    again = save(client, "azure", presigned["objectKey"])
    assert again.status_code == 200, again.get_json()
    assert same_row(again.get_json()["file"], first.get_json()["file"])
    with app.app_context():
        assert get_provider("azure").head(presigned["objectKey"]) is not None
    assert len(rows(db, "azure")) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_issued_for_a_name_cut_at_a_unicode_space_saves_as_issued(
    client: FlaskClient, provider: str
) -> None:
    # 198 bytes, a no-break space, then more: the 200-byte cut used to end the key in U+00A0.
    name = "a" * 198 + "\u00a0" + "tail"
    presigned = presign(client, provider, name, "text/plain", file_size=2)
    key = presigned["objectKey"]
    assert key == key.strip() and not key.endswith(("\u00a0", "."))
    assert put(presigned, b"ok").status_code in (200, 201)
    response = save(client, provider, key)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["file"]["objectKey"] == key
    assert response.get_json()["file"]["fileName"] == "a" * 198


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_is_compared_exactly_as_sent(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider, file_size=2)
    put(presigned, b"ok")
    response = save(client, provider, presigned["objectKey"] + "\u00a0")
    assert response.status_code == 403
    assert response.get_json()["error"] == "objectKey was not issued to this user"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_save_metadata_by_another_user_is_forbidden(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider, user="alice")
    put(presigned, b"alice's bytes")
    response = save(client, provider, presigned["objectKey"], user="mallory")
    assert response.status_code == 403
    assert response.get_json() == {"success": False, "error": "objectKey was not issued to this user"}
    assert rows(db, provider) == []
    # The owner can still save it afterwards.
    assert save(client, provider, presigned["objectKey"], user="alice").status_code == 201


@pytest.mark.parametrize("provider", PROVIDERS)
def test_saved_file_cannot_be_claimed_by_another_user(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider, user="alice")
    put(presigned, b"x")
    assert save(client, provider, presigned["objectKey"], user="alice").status_code == 201
    response = save(client, provider, presigned["objectKey"], user="mallory")
    assert response.status_code == 403
    assert response.get_json()["error"] == "objectKey was not issued to this user"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_save_metadata_before_upload_is_not_found(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert presigned["objectKey"] in error
    assert "PUT the file to presignedUrl first" in error
    assert rows(db, provider) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_save_metadata_of_a_key_never_issued_is_not_found(client: FlaskClient, provider: str) -> None:
    response = save(client, provider, f"{uuid.uuid4()}-made-up.txt")
    assert response.status_code == 404
    assert response.get_json() == {
        "success": False,
        "error": "objectKey was not issued by this service: call presign-upload first",
    }


def test_save_metadata_on_another_providers_route_is_a_conflict(
    client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    presigned = presign(client, "b2")
    put(presigned, b"b2 bytes")
    response = save(client, "s3", presigned["objectKey"])
    assert response.status_code == 409
    assert response.get_json()["error"] == (
        "objectKey was issued for provider 'b2'; save it with /b2/save-metadata"
    )
    assert rows(db, "s3") == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_racing_saves_of_one_key_make_exactly_one_row(
    app: Flask, db: psycopg2.extensions.connection, provider: str
) -> None:
    client = app.test_client()
    presigned = presign(client, provider)
    put(presigned, b"race")
    barrier = threading.Barrier(8)

    def save_once(_: int) -> int:
        barrier.wait()
        return save(app.test_client(), provider, presigned["objectKey"]).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(save_once, range(8)))
    assert statuses.count(201) == 1
    assert statuses.count(200) == 7
    assert len(rows(db, provider)) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unicode_and_awkward_names_survive_the_round_trip(client: FlaskClient, provider: str) -> None:
    name = "résumé 2024 #1 (final) 100% ✓.txt"
    presigned = presign(client, provider, f"../../etc/{name}", "text/plain")
    assert presigned["objectKey"].endswith("-" + name)
    # The key is percent-encoded inside the URLs.
    assert "%" in urlsplit(presigned["presignedUrl"]).path
    assert put(presigned, b"unicode").status_code in (200, 201)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201
    assert response.get_json()["file"]["fileName"] == name


# What the storage servers must refuse, as the real providers would.


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_storage_refuses_a_content_type_other_than_signed(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider, "a.png", "image/png")
    refused = put(presigned, b"<script>", **{"Content-Type": "text/html"})
    assert refused.status_code == 403


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_storage_refuses_a_length_other_than_signed(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider, "a.txt", "text/plain", file_size=5)
    assert put(presigned, b"123456").status_code == 403
    assert put(presigned, b"1234").status_code == 403
    assert put(presigned, b"12345").status_code == 200
    assert "content-length" in presigned["presignedUrl"].lower()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_storage_refuses_a_tampered_signature(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider)
    url = presigned["presignedUrl"]
    marker = "X-Amz-Signature=" if provider != "azure" else "sig="
    start = url.index(marker) + len(marker)
    flipped = "0" if url[start] != "0" else "1"
    tampered = {**presigned, "presignedUrl": url[:start] + flipped + url[start + 1 :]}
    assert put(tampered, b"evil").status_code == 403
    assert save(client, provider, presigned["objectKey"]).status_code == 404


@pytest.mark.parametrize("provider", PROVIDERS)
def test_storage_refuses_an_expired_url(make_app: object, provider: str) -> None:
    app = make_app(UPLOAD_URL_EXPIRES_SECONDS="1")  # type: ignore[operator]
    client = app.test_client()
    presigned = presign(client, provider)
    time.sleep(2.5)
    assert put(presigned, b"late").status_code == 403


@pytest.mark.parametrize("provider", S3_FAMILY)
def test_signed_url_is_sigv4_without_checksum_parameters(client: FlaskClient, provider: str) -> None:
    url = presign(client, provider)["presignedUrl"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url
    # Checksum parameters added by botocore's newer defaults break R2 uploads.
    assert "checksum" not in url.lower()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_guides_shared_save_route_saves_to_the_provider_that_issued_the_key(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider)
    put(presigned, b"shared route")
    field = "blobName" if provider == "azure" else "objectKey"
    response = client.post(
        "/save-metadata", json={field: presigned["objectKey"], "publicFileUrl": "https://evil/x"}
    )
    assert response.status_code == 201
    assert response.get_json()["file"]["provider"] == provider
    [row] = rows(db, provider)
    # The URL a client sends is never stored.
    assert row["file_url"] == presigned["publicFileUrl"]


@pytest.mark.parametrize("provider", S3_FAMILY)
@pytest.mark.parametrize("name", ["notes.ini", "photo.png", "readme.txt", "data.bin"])
def test_a_file_uploaded_as_octet_stream_is_saved_as_octet_stream(
    client: FlaskClient, provider: str, name: str
) -> None:
    # What browsers and Uppy send for a type they do not know; real S3, R2 and B2 store it as sent.
    presigned = presign(client, provider, name, "application/octet-stream", file_size=5)
    assert put(presigned, b"[a]\n\n").status_code == 200
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["file"]["contentType"] == "application/octet-stream"


def test_seaweedfs_itself_still_guesses_a_type_for_octet_stream(stack: tuple[object, dict[str, str]]) -> None:
    # Why devstack/s3_types.py stands in front of it: if this ever fails, SeaweedFS
    # stores what was sent and the proxy can go.
    local = stack[0]
    seaweed = local.seaweed  # type: ignore[attr-defined]
    identity = seaweed.identities[0]
    raw = boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{seaweed.gateway_port}",
        aws_access_key_id=identity.access_key,
        aws_secret_access_key=identity.secret_key,
        region_name="us-east-1",
    )
    key = f"quirk-{uuid.uuid4().hex}.ini"
    raw.put_object(Bucket=identity.bucket, Key=key, Body=b"[a]", ContentType="application/octet-stream")
    try:
        assert raw.head_object(Bucket=identity.bucket, Key=key)["ContentType"] == "text/plain; charset=utf-8"
        assert seaweed.client(identity).head_object(Bucket=identity.bucket, Key=key)["ContentType"] == (
            "application/octet-stream"
        )
    finally:
        raw.delete_object(Bucket=identity.bucket, Key=key)

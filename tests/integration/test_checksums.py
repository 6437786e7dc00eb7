"""Checksums declared at presign: the storage checks the bytes (S3, R2, B2), or save-metadata does (Azure)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg2.extensions
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from app.components import get_provider
from tests import corpus
from tests.helpers import PROVIDERS, S3_FAMILY, put, rows, save, staged

pytestmark = pytest.mark.integration

DATA = corpus.png(64, 64)
OTHER = corpus.png(65, 64)  # the same length, other bytes: only a checksum tells them apart


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5 is MD5


def presign(client: FlaskClient, provider: str, path: str = "presign-upload", **fields: Any) -> Any:
    body = {"fileName": "photo.png", "contentType": "image/png", **fields}
    return client.post(f"/{provider}/{path}", json=body)


# What each provider checks: S3 and R2 both, B2 an MD5 only, Azure an MD5 (at save).
VERIFIED = [
    ("s3", "checksumSHA256"),
    ("s3", "contentMD5"),
    ("r2", "checksumSHA256"),
    ("r2", "contentMD5"),
    ("b2", "contentMD5"),
    ("azure", "contentMD5"),
]
DIGEST = {"checksumSHA256": sha256, "contentMD5": md5}
COLUMN = {"checksumSHA256": "checksum_sha256", "contentMD5": "content_md5"}
HEADER = {"checksumSHA256": "x-amz-checksum-sha256", "contentMD5": "Content-MD5"}


@pytest.mark.parametrize(("provider", "field"), VERIFIED)
def test_a_matching_checksum_is_checked_stored_and_answered(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str, field: str
) -> None:
    digest = DIGEST[field](DATA)
    presigned = presign(client, provider, **{field: digest}).get_json()
    assert presigned["headers"][HEADER[field]] == digest
    assert put(presigned, DATA).status_code in (200, 201)
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    file = response.get_json()["file"]
    other = "contentMD5" if field == "checksumSHA256" else "checksumSHA256"
    assert (file[field], file[other]) == (digest, None)
    assert client.get(f"/{provider}/files/{file['id']}").get_json()["file"][field] == digest
    (row,) = rows(db, provider)
    assert row[COLUMN[field]] == digest
    # Saving again answers the same row, checksum and all.
    assert save(client, provider, presigned["objectKey"]).get_json()["file"][field] == digest


@pytest.mark.parametrize("provider", ["s3"])
def test_both_checksums_are_checked_and_stored_where_the_provider_takes_both(
    client: FlaskClient, db: psycopg2.extensions.connection, provider: str
) -> None:
    presigned = presign(client, provider, checksumSHA256=sha256(DATA), contentMD5=md5(DATA)).get_json()
    assert put(presigned, DATA).status_code == 200
    file = save(client, provider, presigned["objectKey"]).get_json()["file"]
    assert (file["checksumSHA256"], file["contentMD5"]) == (sha256(DATA), md5(DATA))


@pytest.mark.parametrize(("provider", "field"), [v for v in VERIFIED if v[0] in S3_FAMILY])
def test_other_bytes_are_refused_by_the_storage_and_leave_nothing(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection, provider: str, field: str
) -> None:
    presigned = presign(client, provider, **{field: DIGEST[field](DATA)}).get_json()
    refused = put(presigned, OTHER)
    assert refused.status_code == 400
    assert "<Code>BadDigest</Code>" in refused.text
    response = save(client, provider, presigned["objectKey"])
    assert response.status_code == 404
    assert "PUT the file to presignedUrl first" in response.get_json()["error"]
    assert rows(db, provider) == []
    with app.app_context():
        assert get_provider(provider).head(presigned["objectKey"]) is None


@pytest.mark.parametrize(("provider", "field"), [v for v in VERIFIED if v[0] in S3_FAMILY])
def test_the_checksum_headers_cannot_be_left_out(client: FlaskClient, provider: str, field: str) -> None:
    presigned = presign(client, provider, **{field: DIGEST[field](DATA)}).get_json()
    headers = {k: v for k, v in presigned["headers"].items() if k.lower() != HEADER[field].lower()}
    response = requests.put(presigned["presignedUrl"], data=OTHER, headers=headers, timeout=30)
    assert response.status_code == 403  # the checksum is signed: the request no longer matches
    assert "SignatureDoesNotMatch" in response.text


def test_azure_is_told_the_header_and_refuses_other_bytes_sent_with_it(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    presigned = presign(client, "azure", contentMD5=md5(DATA)).get_json()
    # One Put Blob under the key itself, create only: the MD5 Azure stores is of what it wrote.
    assert urlsplit(presigned["presignedUrl"]).path.endswith("/" + presigned["objectKey"])
    assert parse_qs(urlsplit(presigned["presignedUrl"]).query)["sp"] == ["c"]
    refused = put(presigned, OTHER)
    assert refused.status_code == 400
    assert rows(db, "azure") == []
    with app.app_context():
        assert get_provider("azure").head(presigned["objectKey"]) is None


def test_azure_other_bytes_sent_without_the_header_are_refused_at_save_and_deleted(
    app: Flask, client: FlaskClient, db: psycopg2.extensions.connection
) -> None:
    presigned = presign(client, "azure", contentMD5=md5(DATA)).get_json()
    headers = {k: v for k, v in presigned["headers"].items() if k != "Content-MD5"}
    assert requests.put(presigned["presignedUrl"], data=OTHER, headers=headers, timeout=30).status_code == 201
    response = save(client, "azure", presigned["objectKey"])
    assert response.status_code == 422
    assert response.get_json()["error"] == (
        f"the uploaded file ({len(OTHER)} bytes, image/png) is not what objectKey was "
        "presigned for (its type, size or checksum differs); it was deleted"
    )
    assert rows(db, "azure") == []
    with app.app_context():
        storage = get_provider("azure")
        assert storage.head(presigned["objectKey"]) is None
        assert staged(storage, presigned["objectKey"]) is None


def test_azure_checks_the_md5_it_computed_when_the_client_sent_none(client: FlaskClient) -> None:
    presigned = presign(client, "azure", contentMD5=md5(DATA)).get_json()
    headers = {k: v for k, v in presigned["headers"].items() if k != "Content-MD5"}
    assert requests.put(presigned["presignedUrl"], data=DATA, headers=headers, timeout=30).status_code == 201
    response = save(client, "azure", presigned["objectKey"])
    assert response.status_code == 201
    assert response.get_json()["file"]["contentMD5"] == md5(DATA)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_file_without_a_checksum_is_stored_without_one(client: FlaskClient, provider: str) -> None:
    presigned = presign(client, provider).get_json()
    assert not {"x-amz-checksum-sha256", "Content-MD5"} & set(presigned["headers"])
    assert put(presigned, DATA).status_code in (200, 201)
    file = save(client, provider, presigned["objectKey"]).get_json()["file"]
    assert (file["checksumSHA256"], file["contentMD5"]) == (None, None)


GOOD_SHA, GOOD_MD5 = sha256(DATA), md5(DATA)
SHA_SHAPE = "the base64 of the file's 32-byte SHA-256 digest, as x-amz-checksum-sha256 carries it"
MD5_SHAPE = "the base64 of the file's 16-byte MD5 digest, as Content-MD5 carries it"

REFUSED = [
    ("s3", {"checksumSHA256": 5}, f"checksumSHA256 must be a string: {SHA_SHAPE}"),
    ("s3", {"checksumSHA256": ""}, f"checksumSHA256 must be {SHA_SHAPE} (44 characters)"),
    ("s3", {"checksumSHA256": GOOD_MD5}, f"checksumSHA256 must be {SHA_SHAPE} (44 characters)"),
    ("s3", {"checksumSHA256": GOOD_SHA[:-1] + "!"}, f"checksumSHA256 must be {SHA_SHAPE} (44 characters)"),
    ("s3", {"checksumSHA256": hashlib.sha256(DATA).hexdigest()},
     f"checksumSHA256 is hexadecimal; send {SHA_SHAPE}"),
    ("s3", {"contentMD5": hashlib.md5(DATA).hexdigest()},  # noqa: S324 - Content-MD5 is MD5
     f"contentMD5 is hexadecimal; send {MD5_SHAPE}"),
    ("s3", {"contentMD5": GOOD_SHA}, f"contentMD5 must be {MD5_SHAPE} (24 characters)"),
    ("s3", {"contentMD5": ["x"]}, f"contentMD5 must be a string: {MD5_SHAPE}"),
    ("b2", {"checksumSHA256": GOOD_SHA},
     "checksumSHA256 cannot be checked by b2, which checks only contentMD5; "
     "send that instead, or no checksum"),
    ("azure", {"checksumSHA256": GOOD_SHA},
     "checksumSHA256 cannot be checked by azure, which checks only contentMD5; "
     "send that instead, or no checksum"),
    ("r2", {"checksumSHA256": GOOD_SHA, "contentMD5": GOOD_MD5},
     "r2 refuses an upload that carries two checksums: send checksumSHA256 or contentMD5, not both"),
]  # fmt: skip


@pytest.mark.parametrize(("provider", "fields", "message"), REFUSED)
def test_a_checksum_that_is_malformed_or_cannot_be_checked_is_refused(
    client: FlaskClient, provider: str, fields: dict[str, Any], message: str
) -> None:
    response = presign(client, provider, **fields)
    assert (response.status_code, response.get_json()) == (400, {"success": False, "error": message})


@pytest.mark.parametrize("path", ["presign-upload-guide", "generate-upload-sas"])
def test_the_guides_routes_take_checksums_too(client: FlaskClient, path: str) -> None:
    route, provider = ("/presign-upload", "s3") if path == "presign-upload-guide" else (f"/{path}", "azure")
    body = {"fileName": "photo.png", "contentType": "image/png", "contentMD5": md5(DATA)}
    presigned = client.post(route, json=body).get_json()
    assert presigned["headers"]["Content-MD5"] == md5(DATA)
    assert put(presigned, DATA).status_code in (200, 201)
    file = client.post("/save-metadata", json={"objectKey": presigned["objectKey"]}).get_json()["file"]
    assert (file["provider"], file["contentMD5"]) == (provider, md5(DATA))


IN_PARTS = (
    "checksumSHA256 cannot be checked for an upload in parts (s3 checks parts one by one, never the "
    "whole file against one digest); presign the file as one upload, or leave the checksum out"
)


def test_an_upload_in_parts_refuses_a_checksum(client: FlaskClient) -> None:
    companion = client.post(
        "/s3/s3/multipart",
        json={"filename": "v.mp4", "type": "video/mp4", "metadata": {"checksumSHA256": GOOD_SHA}},
    )
    assert (companion.status_code, companion.get_json()["error"]) == (400, IN_PARTS)
    signed = client.post(
        "/s3/s3/sign",
        json={"method": "POST", "key": "v.mp4", "contentType": "video/mp4", "checksumSHA256": GOOD_SHA},
    )
    assert (signed.status_code, signed.get_json()["error"]) == (400, IN_PARTS)


def test_the_sign_routes_single_put_takes_a_checksum(client: FlaskClient) -> None:
    body = {"method": "PUT", "key": "photo.png", "contentType": "image/png", "contentMD5": GOOD_MD5}
    signed = client.post("/b2/s3/sign", json=body).get_json()
    assert signed["headers"]["Content-MD5"] == GOOD_MD5
    refused = requests.put(signed["url"], data=OTHER, headers=signed["headers"], timeout=30)
    assert (refused.status_code, "BadDigest" in refused.text) == (400, True)
    assert requests.put(signed["url"], data=DATA, headers=signed["headers"], timeout=30).status_code == 200
    assert save(client, "b2", signed["key"]).get_json()["file"]["contentMD5"] == GOOD_MD5


@pytest.mark.parametrize("provider", ["s3", "r2"])
def test_companion_params_take_a_checksum_from_uppys_file_metadata(
    client: FlaskClient, provider: str
) -> None:
    query = {"filename": "photo.png", "type": "image/png", "metadata[checksumSHA256]": GOOD_SHA}
    params = client.get(f"/{provider}/s3/params", query_string=query).get_json()
    # A PUT (even on S3, whose plain answer is a POST form): the checksum is one of its headers.
    assert (params["method"], params["headers"]["x-amz-checksum-sha256"]) == ("PUT", GOOD_SHA)
    refused = requests.put(params["url"], data=OTHER, headers=params["headers"], timeout=30)
    assert refused.status_code == 400
    assert requests.put(params["url"], data=DATA, headers=params["headers"], timeout=30).status_code == 200
    assert save(client, provider, params["key"]).get_json()["file"]["checksumSHA256"] == GOOD_SHA


REQUIRED = (
    "a checksum of the file is required (REQUIRE_CHECKSUMS): send checksumSHA256 or contentMD5, "
    "the base64 of its digest, which s3 checks the upload against"
)


def test_an_operator_can_require_checksums(make_app: Callable[..., Flask]) -> None:
    client = make_app(REQUIRE_CHECKSUMS="true").test_client()
    refused = presign(client, "s3")
    assert (refused.status_code, refused.get_json()["error"]) == (400, REQUIRED)
    guide = client.post("/presign-upload", json={"fileName": "a.png", "contentType": "image/png"})
    assert (guide.status_code, guide.get_json()["error"]) == (400, REQUIRED)
    azure = presign(client, "azure")
    assert azure.get_json()["error"] == (
        "a checksum of the file is required (REQUIRE_CHECKSUMS): send contentMD5, the base64 of its digest, "
        "which azure checks the upload against"
    )
    parts = client.post("/s3/s3/multipart", json={"filename": "v.mp4", "type": "video/mp4"})
    assert (parts.status_code, parts.get_json()["error"]) == (400, (
        "uploads in parts are refused here: this service requires a checksum of every file "
        "(REQUIRE_CHECKSUMS), and no provider checks one for an upload in parts; presign the file as "
        "one upload with checksumSHA256 or contentMD5"
    ))  # fmt: skip
    presigned = presign(client, "s3", checksumSHA256=GOOD_SHA).get_json()
    assert put(presigned, DATA).status_code == 200
    assert save(client, "s3", presigned["objectKey"]).status_code == 201

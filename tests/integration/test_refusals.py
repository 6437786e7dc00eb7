"""Every refusal: its status code and the message that names what was wrong."""

from __future__ import annotations

from typing import Any

import psycopg2.extensions
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.helpers import PROVIDERS, rows

pytestmark = pytest.mark.integration

GOOD = {"fileName": "a.txt", "contentType": "text/plain"}


def error_of(response: Any) -> str:
    body = response.get_json()
    assert body["success"] is False
    assert set(body) == {"success", "error"}
    return str(body["error"])


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 400, "fileName is required"),
        ({"contentType": "text/plain"}, 400, "fileName is required"),
        ({"fileName": "a.txt"}, 400, "contentType is required"),
        ({"fileName": 42, "contentType": "text/plain"}, 400, "fileName must be a string"),
        ({"fileName": ["a"], "contentType": "text/plain"}, 400, "fileName must be a string"),
        ({"fileName": "   ", "contentType": "text/plain"}, 400, "fileName must not be empty"),
        (
            {"fileName": "a" * 1025, "contentType": "text/plain"},
            400,
            "fileName is too long (at most 1024 characters)",
        ),
        (
            {"fileName": "../..", "contentType": "text/plain"},
            400,
            "fileName has nothing left once path parts and control characters are removed",
        ),
        (
            {"fileName": "dir/", "contentType": "text/plain"},
            400,
            "fileName has nothing left once path parts and control characters are removed",
        ),
        (
            {"fileName": "\x00\x01\x1f", "contentType": "text/plain"},
            400,
            "fileName has nothing left once path parts and control characters are removed",
        ),
        ({"fileName": "a.txt", "contentType": 5}, 400, "contentType must be a string"),
        (
            {"fileName": "a.txt", "contentType": "text"},
            400,
            "contentType is not a valid media type such as image/png",
        ),
        (
            {"fileName": "a.txt", "contentType": "text/plain\r\nX-Evil: 1"},
            400,
            "contentType is not a valid media type such as image/png",
        ),
        (
            {"fileName": "a.txt", "contentType": "text/" + "a" * 300},
            400,
            "contentType is too long (at most 255 characters)",
        ),
        ({**GOOD, "fileSize": "12"}, 400, "fileSize must be a whole number of bytes"),
        ({**GOOD, "fileSize": 1.5}, 400, "fileSize must be a whole number of bytes"),
        ({**GOOD, "fileSize": True}, 400, "fileSize must be a whole number of bytes"),
        ({**GOOD, "fileSize": -1}, 400, "fileSize must not be negative"),
    ],
)
def test_presign_refuses_bad_fields(
    client: FlaskClient, provider: str, body: dict[str, Any], status: int, message: str
) -> None:
    response = client.post(f"/{provider}/presign-upload", json=body)
    assert response.status_code == status
    assert error_of(response) == message


@pytest.mark.parametrize("provider", PROVIDERS)
def test_presign_refuses_a_file_over_the_upload_limit(client: FlaskClient, provider: str) -> None:
    response = client.post(f"/{provider}/presign-upload", json={**GOOD, "fileSize": 100 * 1024**2 + 1})
    assert response.status_code == 413
    assert error_of(response) == f"fileSize {100 * 1024**2 + 1} is over the {100 * 1024**2} byte upload limit"


@pytest.mark.parametrize("provider", ["s3", "r2", "b2"])
def test_presign_limit_is_capped_by_what_one_put_can_carry(make_app: Any, provider: str) -> None:
    limit = 5 * 1024**3  # larger files go in parts (/P/s3/...)
    client = make_app(MAX_UPLOAD_BYTES=str(10 * 1024**3)).test_client()
    response = client.post(f"/{provider}/presign-upload", json={**GOOD, "fileSize": limit + 1})
    assert response.status_code == 413
    assert error_of(response) == f"fileSize {limit + 1} is over the {limit} byte upload limit"


@pytest.mark.parametrize(
    "path", ["/s3/presign-upload", "/azure/save-metadata", "/presign-upload", "/save-metadata"]
)
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "request body is empty: send a JSON object"),
        (b"{not json", "request body is not valid JSON"),
        (b"\xff\xfe\x00garbage", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'"text"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
    ],
)
def test_bodies_that_are_not_json_objects_are_refused(
    client: FlaskClient, path: str, data: bytes, message: str
) -> None:
    response = client.post(path, data=data, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response) == message


def test_json_without_content_type_header_is_still_accepted(client: FlaskClient) -> None:
    # curl -d without -H "Content-Type: application/json" sends form encoding.
    response = client.post(
        "/s3/presign-upload",
        data=b'{"fileName": "a.txt", "contentType": "text/plain"}',
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "objectKey is required"),
        ({"publicFileUrl": "https://evil.example/x"}, "objectKey is required"),
        ({"objectKey": 7}, "objectKey must be a string"),
        ({"objectKey": ""}, "objectKey must not be empty"),
        ({"objectKey": "k" * 1025}, "objectKey is too long (at most 1024 characters)"),
        ({"objectKey": "a\nb"}, "objectKey contains control characters"),
    ],
)
def test_save_metadata_refuses_bad_keys(
    client: FlaskClient, provider: str, body: dict[str, Any], message: str
) -> None:
    if provider == "azure" and message == "objectKey is required":
        message = "objectKey or blobName is required"
    response = client.post(f"/{provider}/save-metadata", json=body)
    assert response.status_code == 400
    assert error_of(response) == message


def test_save_metadata_on_azure_accepts_the_guides_blob_name(client: FlaskClient) -> None:
    response = client.post("/azure/save-metadata", json={"blobName": 3})
    assert response.status_code == 400
    assert error_of(response) == "blobName must be a string"


@pytest.mark.parametrize("provider", PROVIDERS)
def test_unconfigured_provider_answers_503_naming_missing_variables(
    make_app: Any, provider: str, db: psycopg2.extensions.connection
) -> None:
    missing = {
        "s3": ("S3_BUCKET_NAME",),
        "r2": ("R2_ACCESS_KEY_ID", "R2_BUCKET_NAME"),
        "b2": ("B2_ENDPOINT_URL",),
        "azure": ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_NAME"),
    }[provider]
    app: Flask = make_app(**dict.fromkeys(missing))
    client = app.test_client()
    for path in (f"/{provider}/presign-upload", f"/{provider}/save-metadata"):
        response = client.post(path, json=GOOD)
        assert response.status_code == 503
        assert error_of(response) == f"provider {provider!r} is not configured: set {', '.join(missing)}"
    listed = client.get("/providers").get_json()["providers"]
    assert provider not in [p["name"] for p in listed]
    assert rows(db, provider) == []


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.post("/gcs/presign-upload", json=GOOD)
    assert response.status_code == 404
    assert "not found" in error_of(response).lower()


def test_wrong_method_is_json_405(client: FlaskClient) -> None:
    response = client.get("/s3/presign-upload")
    assert response.status_code == 405
    assert "not allowed" in error_of(response).lower()
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("value", ["", "x" * 129, "bad id", "naïve"])
def test_malformed_user_header_is_refused(client: FlaskClient, value: str) -> None:
    response = client.post("/s3/presign-upload", json=GOOD, headers={"X-User-Id": value})
    assert response.status_code == 400
    assert error_of(response) == "X-User-Id must be 1 to 128 visible ASCII characters"


def test_deeply_nested_json_is_refused(client: FlaskClient) -> None:
    response = client.post("/s3/presign-upload", data=b"[" * 30000 + b"]" * 30000)
    assert response.status_code == 400
    assert error_of(response) == "request body is nested too deeply"


def test_lone_surrogates_in_strings_are_refused(client: FlaskClient) -> None:
    data = b'{"fileName": "a\\ud800.txt", "contentType": "text/plain"}'
    response = client.post("/s3/presign-upload", data=data, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response) == "fileName is not valid Unicode text"


def test_oversized_body_is_refused_unread(client: FlaskClient) -> None:
    data = b'{"fileName": "' + b"a" * 70000 + b'", "contentType": "text/plain"}'
    response = client.post("/s3/presign-upload", data=data, content_type="application/json")
    assert response.status_code == 413
    assert error_of(response) == "request body is over the 65536 byte limit"


def test_huge_file_size_number_is_refused_as_too_large(client: FlaskClient) -> None:
    data = b'{"fileName": "a.txt", "contentType": "text/plain", "fileSize": 99999999999999999999999}'
    response = client.post("/s3/presign-upload", data=data, content_type="application/json")
    assert response.status_code == 413
    data = b'{"fileName": "a.txt", "contentType": "text/plain", "fileSize": 1e400}'
    response = client.post("/s3/presign-upload", data=data, content_type="application/json")
    assert response.status_code == 400
    assert error_of(response) == "fileSize must be a whole number of bytes"

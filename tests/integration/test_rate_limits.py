"""Rate limits: per user, shared by one scope's routes, by address without a token, across replicas."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from tests.tokens import HS_SECRET, bearer, hs256

pytestmark = pytest.mark.integration

GOOD = {"fileName": "a.txt", "contentType": "text/plain"}


def test_rate_limit_is_per_user_and_shared_by_every_presign_route(make_app: Callable[..., Flask]) -> None:
    app = make_app(AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET, RATE_LIMIT_PRESIGN="3/minute")
    client = app.test_client()
    carol, dave = bearer(hs256("carol")), bearer(hs256("dave"))
    for path in ("/s3/presign-upload", "/azure/presign-upload", "/presign-b2-upload"):
        assert client.post(path, json=GOOD, headers=carol).status_code == 200
    limited = client.post("/r2/presign-upload", json=GOOD, headers=carol)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 61  # the window, rounded up to whole seconds
    assert limited.get_json()["success"] is False
    assert limited.get_json()["error"].startswith("rate limit exceeded (3 per 1 minute), try again in ")
    # Another user has a budget of their own; saving is limited separately.
    assert client.post("/s3/presign-upload", json=GOOD, headers=dave).status_code == 200
    assert client.post("/s3/save-metadata", json={"objectKey": "x"}, headers=carol).status_code == 404


def test_file_routes_share_their_own_rate_limit(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATE_LIMIT_FILES="3/minute")
    client = app.test_client()
    headers = {"X-User-Id": "lister"}
    assert client.get("/s3/files", headers=headers).status_code == 200
    assert client.get("/azure/files/1", headers=headers).status_code == 404
    assert client.delete("/r2/files/1", headers=headers).status_code == 404
    limited = client.get("/b2/files/1/download", headers=headers)
    assert limited.status_code == 429
    assert limited.get_json()["error"].startswith("rate limit exceeded (3 per 1 minute), try again in ")
    # Uploading is limited separately.
    assert client.post("/s3/presign-upload", json=GOOD, headers=headers).status_code == 200


def test_starting_an_upload_in_parts_counts_as_a_presign_and_its_steps_as_parts(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(RATE_LIMIT_PRESIGN="1/minute", RATE_LIMIT_PARTS="2/minute")
    client = app.test_client()
    headers = {"X-User-Id": "parted"}
    first = {"method": "POST", "key": "a.bin", "contentType": "application/octet-stream"}
    started = client.post("/s3/s3/sign", json=first, headers=headers)
    assert started.status_code == 200
    assert (
        client.post("/r2/s3/multipart", json={"filename": "b", "type": "a/b"}, headers=headers).status_code
        == 429
    )
    step = {"method": "PUT", "key": started.get_json()["key"], "uploadId": "u", "partNumber": 1}
    assert client.post("/s3/s3/sign", json=step, headers=headers).status_code == 200
    assert client.post("/s3/s3/sign", json=step, headers=headers).status_code == 200
    limited = client.post("/s3/s3/sign", json=step, headers=headers)
    assert limited.status_code == 429
    assert limited.get_json()["error"].startswith("rate limit exceeded (2 per 1 minute), try again in ")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/s3/presign-upload", GOOD),
        ("POST", "/presign-upload", GOOD),
        ("POST", "/s3/save-metadata", {"objectKey": "x"}),
        ("GET", "/s3/files", None),
        ("DELETE", "/s3/files/1", None),
        ("POST", "/s3/s3/sign", {"method": "PUT", "key": "a.txt", "contentType": "text/plain"}),
        ("POST", "/s3/s3/sign", {"method": "PUT", "key": "k", "uploadId": "u", "partNumber": 1}),
        ("POST", "/s3/s3/sign", None),
        ("POST", "/s3/s3/sign", {"method": "PUT", "key": "k", "padding": "x" * 70_000}),  # over 64 KiB
        ("GET", "/s3/s3/params?filename=a.txt&type=text/plain", None),
        ("POST", "/s3/s3/multipart", {"filename": "a.txt", "type": "text/plain"}),
        ("GET", "/s3/s3/multipart/u/1?key=k", None),
    ],
)
def test_requests_without_a_valid_token_are_limited_by_address_on_every_route(
    make_app: Callable[..., Flask], method: str, path: str, body: dict[str, Any] | None
) -> None:
    limits = {f"RATE_LIMIT_{scope}": "2/minute" for scope in ("PRESIGN", "SAVE", "FILES", "PARTS")}
    app = make_app(AUTH_MODE=None, AUTH_JWT_SECRET=HS_SECRET, **limits)
    client = app.test_client()
    statuses = [
        client.open(path, method=method, json=body, headers=bearer("junk")).status_code for _ in range(3)
    ]
    assert statuses == [401, 401, 429]


def redis_is_running() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


@pytest.mark.skipif(not redis_is_running(), reason="no Redis on 127.0.0.1:6379")
def test_rate_limit_is_shared_by_containers_through_redis(make_app: Callable[..., Flask]) -> None:
    import uuid

    user = f"user-{uuid.uuid4()}"
    env = {"RATE_LIMIT_PRESIGN": "2/minute", "RATE_LIMIT_STORAGE_URI": "redis://127.0.0.1:6379/15"}
    first, second = make_app(**env).test_client(), make_app(**env).test_client()
    headers = {"X-User-Id": user}
    assert first.post("/s3/presign-upload", json=GOOD, headers=headers).status_code == 200
    assert second.post("/s3/presign-upload", json=GOOD, headers=headers).status_code == 200
    assert first.post("/s3/presign-upload", json=GOOD, headers=headers).status_code == 429


def test_unreachable_redis_does_not_take_uploads_down(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATE_LIMIT_STORAGE_URI="redis://127.0.0.1:9/0")
    assert app.test_client().post("/s3/presign-upload", json=GOOD).status_code == 200

"""Liveness, readiness, request ids and what the service trusts from a reverse proxy."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from flask import Flask

pytestmark = pytest.mark.integration

FORWARDED = {
    "X-Forwarded-For": "203.0.113.9",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "uploads.example.com",
}


def test_healthz_needs_no_database(make_app: Callable[..., Flask]) -> None:
    app = make_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/none", DB_CONNECT_TIMEOUT_SECONDS="1")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_database_and_providers(make_app: Callable[..., Flask]) -> None:
    app = make_app(R2_BUCKET_NAME=None)
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["providers"]["s3"]["configured"] is True
    assert body["providers"]["r2"] == {"configured": False, "missing": ["R2_BUCKET_NAME"]}


def test_readyz_is_503_when_the_database_is_unreachable(make_app: Callable[..., Flask]) -> None:
    app = make_app(DATABASE_URL="postgresql://postgres:pw@127.0.0.1:1/none", DB_CONNECT_TIMEOUT_SECONDS="1")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == "database unavailable, try again shortly"
    assert b"pw" not in response.data


def test_request_id_is_kept_or_made(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"}).headers["X-Request-ID"]
    assert made != "no spaces allowed" and len(made) == 32


def access_entry(caplog: pytest.LogCaptureFixture, request_id: str) -> logging.LogRecord:
    [record] = [
        r for r in caplog.records if r.name == "app.access" and getattr(r, "request_id", None) == request_id
    ]
    return record


@pytest.mark.parametrize(("trusted", "client", "scheme", "host"), [
    ("0", "127.0.0.1", "http", "localhost"),
    ("1", "203.0.113.9", "https", "uploads.example.com"),
])  # fmt: skip
def test_forwarded_headers_are_used_only_from_trusted_proxies(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    trusted: str,
    client: str,
    scheme: str,
    host: str,
) -> None:
    from app.observability import RequestContextFilter

    caplog.handler.addFilter(RequestContextFilter())
    caplog.set_level(logging.INFO, logger="app.access")
    app = make_app(TRUSTED_PROXY_COUNT=trusted)
    app.test_client().get("/healthz", headers={**FORWARDED, "X-Request-ID": f"proxy-{trusted}"})
    record = access_entry(caplog, f"proxy-{trusted}")
    assert (record.client, record.scheme, record.host) == (client, scheme, host)  # type: ignore[attr-defined]

"""CORS for the API and no caching of signed URLs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

pytestmark = pytest.mark.integration

GOOD = {"fileName": "a.txt", "contentType": "text/plain"}
ORIGIN = "https://app.example.com"


def preflight(app: Flask, path: str, origin: str = ORIGIN) -> object:
    return app.test_client().options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )


@pytest.mark.parametrize(
    "path", ["/s3/presign-upload", "/azure/save-metadata", "/presign-upload", "/save-metadata"]
)
def test_preflight_is_answered_for_allowed_origins(make_app: Callable[..., Flask], path: str) -> None:
    app = make_app(CORS_ALLOWED_ORIGINS=f"{ORIGIN}, https://admin.example.com")
    response = preflight(app, path)
    assert response.status_code == 200  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in headers["Access-Control-Allow-Methods"]
    allowed = headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "Access-Control-Allow-Credentials" not in headers


def test_cors_headers_on_the_actual_request(make_app: Callable[..., Flask]) -> None:
    app = make_app(CORS_ALLOWED_ORIGINS=ORIGIN)
    response = app.test_client().post("/s3/presign-upload", json=GOOD, headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_other_origins_get_no_cors_headers(make_app: Callable[..., Flask]) -> None:
    app = make_app(CORS_ALLOWED_ORIGINS=ORIGIN)
    response = preflight(app, "/s3/presign-upload", origin="https://evil.example")
    assert "Access-Control-Allow-Origin" not in response.headers  # type: ignore[attr-defined]


def test_no_cors_headers_unless_configured(make_app: Callable[..., Flask]) -> None:
    response = preflight(make_app(), "/s3/presign-upload")
    assert "Access-Control-Allow-Origin" not in response.headers  # type: ignore[attr-defined]


def test_presign_answers_are_never_cached(make_app: Callable[..., Flask]) -> None:
    response = make_app().test_client().post("/s3/presign-upload", json=GOOD)
    assert response.headers["Cache-Control"] == "no-store"

"""The upload page's routes without a browser: what is served, with which headers, and the refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import app.page as page_module
from app.config import ConfigError

pytestmark = pytest.mark.integration


def page_config(client: FlaskClient) -> dict[str, object]:
    html = client.get("/").get_data(as_text=True)
    match = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', html, re.S)
    assert match is not None
    config: dict[str, object] = json.loads(match.group(1))
    return config


def test_page_is_served_with_its_configuration_and_a_strict_policy(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert '<html lang="en">' in response.get_data(as_text=True)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "frame-ancestors 'none'" in policy
    assert re.search(r"connect-src 'self' http://127\.0\.0\.1:\d+", policy)
    assert page_config(client) == {
        "providers": ["s3", "r2", "b2", "azure"],
        "defaultProvider": "s3",
        "authMode": "dev",
        "tokenUrl": None,
        "multipartThreshold": 100 * 1024**2,
        "maxUploadBytes": 100 * 1024**2,
    }


def test_page_offers_only_the_enabled_providers(make_app: Callable[..., Flask]) -> None:
    client = make_app(S3_BUCKET_NAME=None, B2_BUCKET_NAME=None).test_client()
    config = page_config(client)
    assert config["providers"] == ["r2", "azure"]
    assert config["defaultProvider"] == "r2"


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/assets/upload.js", "text/javascript"),
        ("/assets/upload.css", "text/css"),
        ("/assets/uppy/uppy.min.mjs", "text/javascript"),
        ("/assets/uppy/uppy.min.css", "text/css"),
    ],
)
def test_assets_are_served_with_their_types_and_may_be_cached(
    client: FlaskClient, path: str, media_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == media_type
    assert response.headers["Cache-Control"].startswith("public, max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/assets/app.py", "no asset 'app.py'"),
        (
            "/assets/%2e%2e%2fconfig.py",
            "The requested URL was not found on the server. If you entered the URL "
            "manually please check your spelling and try again.",
        ),
        ("/assets/uppy/package.json", "no Uppy file 'package.json'"),
    ],
)
def test_only_the_pages_own_files_are_served(client: FlaskClient, path: str, message: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json() == {"success": False, "error": message}


def test_a_missing_uppy_install_is_named(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(page_module, "UPPY_DIST", tmp_path)
    response = client.get("/assets/uppy/uppy.min.mjs")
    assert response.status_code == 503
    assert response.get_json() == {
        "success": False,
        "error": "Uppy is not installed: run `npm ci` (make install does)",
    }


@pytest.mark.parametrize("value", ["1024", "6000000000", "lots"])
def test_the_multipart_threshold_is_checked_at_start_up(make_app: Callable[..., Flask], value: str) -> None:
    with pytest.raises(ConfigError, match="UPLOAD_PAGE_MULTIPART_THRESHOLD_BYTES"):
        make_app(UPLOAD_PAGE_MULTIPART_THRESHOLD_BYTES=value)

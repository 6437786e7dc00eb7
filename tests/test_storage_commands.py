"""`flask storage create-buckets` and `flask storage cors`, checked against the emulators over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import requests
from flask import Flask

from app.storage import get_provider

pytestmark = pytest.mark.integration

ORIGIN = "https://app.example.com"


def test_create_buckets_creates_what_is_missing_once(make_app: Callable[..., Flask]) -> None:
    suffix = uuid.uuid4().hex[:8]
    app = make_app(S3_BUCKET_NAME=f"fresh-s3-{suffix}", AZURE_STORAGE_CONTAINER_NAME=f"fresh-az-{suffix}")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["storage", "create-buckets"])
    assert first.exit_code == 0, first.output
    assert f"s3: created fresh-s3-{suffix}" in first.output
    assert f"azure: created fresh-az-{suffix}" in first.output
    assert "r2: exists" in first.output
    second = runner.invoke(args=["storage", "create-buckets"])
    assert f"s3: exists fresh-s3-{suffix}" in second.output
    assert f"azure: exists fresh-az-{suffix}" in second.output


def test_create_buckets_reports_unreachable_storage(make_app: Callable[..., Flask]) -> None:
    app = make_app(
        S3_ENDPOINT_URL="http://127.0.0.1:9", STORAGE_MAX_ATTEMPTS="1", R2_BUCKET_NAME=None,
        B2_BUCKET_NAME=None, AZURE_STORAGE_CONTAINER_NAME=None,
    )  # fmt: skip
    result = app.test_cli_runner().invoke(args=["storage", "create-buckets"])
    assert result.exit_code == 1
    assert "s3: s3 storage is unreachable, try again" in result.output


@pytest.mark.parametrize("provider", ["s3", "r2", "b2", "azure"])
def test_cors_command_lets_a_browser_preflight_through(make_app: Callable[..., Flask], provider: str) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(args=["storage", "cors", "--origin", ORIGIN])
    assert result.exit_code == 0, result.output
    assert f"{provider}: CORS on " in result.output
    with app.app_context():
        url = get_provider(provider).object_url("any-key.txt")
    preflight = requests.options(
        url,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type,x-ms-blob-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200, preflight.text
    assert preflight.headers["Access-Control-Allow-Origin"] in (ORIGIN, "*")
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]


def test_cors_command_needs_an_origin(make_app: Callable[..., Flask]) -> None:
    result = make_app().test_cli_runner().invoke(args=["storage", "cors"])
    assert result.exit_code == 1
    assert "give --origin https://your.site (or set CORS_ALLOWED_ORIGINS)" in result.output

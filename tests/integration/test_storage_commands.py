"""`flask storage create-buckets`, `cors` and `check`, against the emulators over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
import requests
from flask import Flask

from app.components import get_provider
from app.storage import StorageRefused

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


@pytest.mark.parametrize("provider", ["s3", "r2", "b2", "azure"])
def test_cors_rules_are_enforced_for_other_origins(make_app: Callable[..., Flask], provider: str) -> None:
    app = make_app()
    result = app.test_cli_runner().invoke(args=["storage", "cors", provider, "--origin", ORIGIN])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{provider}: CORS on {get_bucket(app, provider)} allows {ORIGIN}"
    with app.app_context():
        url = get_provider(provider).object_url("any-key.txt")
    preflight = requests.options(
        url,
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "PUT"},
        timeout=10,
    )
    assert preflight.headers.get("Access-Control-Allow-Origin") not in ("https://evil.example.net", "*")


def get_bucket(app: Flask, provider: str) -> str:
    with app.app_context():
        return get_provider(provider).bucket


def test_cors_names_a_provider_that_is_not_configured(make_app: Callable[..., Flask]) -> None:
    result = (
        make_app(B2_BUCKET_NAME=None)
        .test_cli_runner()
        .invoke(args=["storage", "cors", "b2", "--origin", ORIGIN])
    )
    assert result.exit_code == 1
    assert "b2 is not configured: set B2_BUCKET_NAME" in result.output


def test_cors_prints_b2_native_rules_when_the_s3_api_refuses(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app()
    with app.app_context():
        b2 = get_provider("b2")

    def refuse(origins: object) -> None:
        raise StorageRefused("b2 storage refused the request (AccessDenied)")

    # A unit of the fallback: the emulator accepts PutBucketCors, real B2 keys sometimes do not.
    monkeypatch.setattr(b2, "set_cors", refuse)
    result = app.test_cli_runner().invoke(args=["storage", "cors", "b2", "--origin", ORIGIN])
    assert result.exit_code == 1
    assert (
        "b2: the S3 API refused PutBucketCors (b2 storage refused the request (AccessDenied))"
        in result.output
    )
    assert "the rules were NOT applied" in result.output
    lines = [line.strip() for line in result.output.splitlines()]
    [command] = [line for line in lines if line.startswith("b2 bucket update --cors-rules '")]
    assert command.endswith(f"' {b2.bucket}")
    rules = json.loads(command.split("'")[1])
    assert rules[0]["allowedOrigins"] == [ORIGIN]
    assert set(rules[0]["allowedOperations"]) >= {"s3_put", "s3_get", "s3_head"}
    assert rules[0]["exposeHeaders"] == ["etag"]
    # The article's older CLI form, with the bucket's type as configured (private here).
    [older] = [line for line in lines if line.startswith("b2 update-bucket --corsRules '")]
    assert older.endswith(f"' {b2.bucket} allPrivate")
    assert json.loads(older.split("'")[1]) == rules


def test_check_passes_when_everything_is_set_up(make_app: Callable[..., Flask]) -> None:
    app = make_app(CORS_ALLOWED_ORIGINS=ORIGIN)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["storage", "cors"]).exit_code == 0
    result = runner.invoke(args=["storage", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["provider", "bucket", "credentials", "bucket", "exists", "CORS"]
    for provider in ("s3", "r2", "b2", "azure"):
        [line] = [line for line in lines if line.startswith(provider + " ")]
        assert line.split()[2:] == ["ok", "exists", "allows", ORIGIN]
    assert "database: ok, schema up to date" in result.output


def test_check_reports_cors_that_does_not_allow_an_origin(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["storage", "cors", "--origin", ORIGIN]).exit_code == 0
    result = runner.invoke(args=["storage", "check", "--origin", "https://other.example.org"])
    assert result.exit_code == 1
    assert "does not allow https://other.example.org (run: flask storage cors s3)" in result.output


def test_check_reports_bad_credentials_missing_buckets_and_a_dead_database(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(
        AWS_SECRET_ACCESS_KEY="wrong-secret",
        R2_BUCKET_NAME=f"missing-{uuid.uuid4().hex[:8]}",
        B2_BUCKET_NAME=None,
        DATABASE_URL="postgresql://nobody@127.0.0.1:9/none?connect_timeout=1",
    )
    result = app.test_cli_runner().invoke(args=["storage", "check"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    [s3] = [line for line in lines if line.startswith("s3 ")]
    assert "refused: s3 storage refused the request (" in s3
    [r2] = [line for line in lines if line.startswith("r2 ")]
    assert "missing (run: flask storage create-buckets)" in r2
    [b2] = [line for line in lines if line.startswith("b2 ")]
    assert "not configured (set B2_BUCKET_NAME or B2_BUCKET)" in b2
    assert "database: unreachable (OperationalError)" in result.output

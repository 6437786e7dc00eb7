"""GET /providers: what is enabled, never a secret."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

pytestmark = pytest.mark.integration


def test_providers_lists_every_enabled_provider_and_its_bucket(
    client: FlaskClient, app_env: dict[str, str]
) -> None:
    response = client.get("/providers")
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "defaultProvider": "s3",
        "providers": [
            {"name": "s3", "bucket": app_env["S3_BUCKET_NAME"]},
            {"name": "r2", "bucket": app_env["R2_BUCKET_NAME"]},
            {"name": "b2", "bucket": app_env["B2_BUCKET_NAME"]},
            {"name": "azure", "bucket": app_env["AZURE_STORAGE_CONTAINER_NAME"]},
        ],
    }
    for name, value in app_env.items():
        if "SECRET" in name or name.endswith("_KEY") or "CONNECTION_STRING" in name or name == "DATABASE_URL":
            assert value.encode() not in response.data


def test_providers_omits_disabled_ones(make_app: Callable[..., Flask]) -> None:
    app = make_app(R2_BUCKET_NAME=None, AZURE_STORAGE_CONTAINER_NAME=None, DEFAULT_PROVIDER="b2")
    body = app.test_client().get("/providers").get_json()
    assert body["defaultProvider"] == "b2"
    assert [p["name"] for p in body["providers"]] == ["s3", "b2"]

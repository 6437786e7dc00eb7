"""HTTP_PROXY and NO_PROXY hold for save-metadata's read of the object (a ranged GET) as for botocore's calls,
through a real tinyproxy (the ``tinyproxy`` fixture, in conftest)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from app.config import ConfigError
from tests.helpers import presign, put, save

pytestmark = pytest.mark.integration


def test_save_metadata_reads_through_the_proxy_the_environment_names(
    make_app: Callable[..., Flask], tinyproxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, log = tinyproxy
    app = make_app()
    client = app.test_client()
    presigned = presign(client, "s3", "proxied.txt", file_size=2)
    assert put(presigned, b"ok").status_code == 200

    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)
    proxied = make_app()  # providers (and their connection pools) are built at start-up
    response = save(proxied.test_client(), "s3", presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    assert "GET" in log.read_text() and presigned["objectKey"] in log.read_text()


def test_no_proxy_keeps_the_head_direct(
    make_app: Callable[..., Flask], tinyproxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, log = tinyproxy
    client = make_app().test_client()
    presigned = presign(client, "s3", "direct.txt", file_size=2)
    assert put(presigned, b"ok").status_code == 200
    monkeypatch.setenv("HTTP_PROXY", url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    response = save(make_app().test_client(), "s3", presigned["objectKey"])
    assert response.status_code == 201, response.get_json()
    assert presigned["objectKey"] not in (log.read_text() if log.exists() else "")


def test_a_proxy_reached_over_https_is_refused_at_start_up(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example.com:3129")
    with pytest.raises(ConfigError) as caught:
        make_app()
    assert caught.value.problems == [
        "HTTP_PROXY: only an http:// proxy is supported for storage requests (s3)"
    ]

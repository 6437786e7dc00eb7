"""The proxy the environment names, read as botocore reads it (``app/proxies.py``)."""

from __future__ import annotations

import pytest
import urllib3

from app.proxies import Proxy, UnusableProxy, proxy_for


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_the_proxy_of_the_requests_scheme_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "storage.internal")
    assert proxy_for("https", "hooks.example.com", "webhooks") == Proxy(
        "proxy.internal",
        3128,
        "Basic dXNlcjpwQHNz",  # user:p@ss
    )
    assert proxy_for("http", "hooks.example.com") is None  # HTTP_PROXY is not set
    assert proxy_for("https", "storage.internal") is None


def test_a_proxy_url_names_an_ipv6_host_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://[fd00::1]:3128")
    proxy = proxy_for("http", "hooks.example.com")
    assert proxy is not None and proxy.host == "fd00::1"
    assert proxy.url == "http://[fd00::1]:3128"
    assert urllib3.ProxyManager(proxy.url).proxy.host == "[fd00::1]"  # urllib3 takes it (the worker's pool)
    assert Proxy("proxy.internal", 8080).url == "http://proxy.internal:8080"


def test_a_proxy_reached_over_https_is_refused_naming_the_variable_and_the_purpose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "https://proxy.internal:3129")
    refusal = r"^HTTPS_PROXY: only an http:// proxy is supported for webhooks$"
    with pytest.raises(UnusableProxy, match=refusal):
        proxy_for("https", "hooks.example.com", "webhooks")

"""The forward proxy the environment names for an outbound request, read as botocore reads it.

``HTTPS_PROXY`` or ``HTTP_PROXY`` (by the origin's scheme), unless
``NO_PROXY`` names the host. Used by the requests the service makes itself
rather than through an SDK (``storage/http.py``'s object reads, the webhook
worker), so that one proxy setting covers everything the service sends.
"""

from __future__ import annotations

import base64
import urllib.request
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class UnusableProxy(ValueError):
    """The environment names a proxy the service cannot speak to (one reached over https)."""


@dataclass(frozen=True)
class Proxy:
    """A forward proxy that requests to one origin go through."""

    host: str
    port: int
    #: the Proxy-Authorization header, when the proxy URL carries a user
    authorization: str | None = None

    @property
    def url(self) -> str:
        """``http://host:port``, without the credentials (they go in ``authorization``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"


def proxy_for(scheme: str, host: str, purpose: str = "storage requests") -> Proxy | None:
    """The proxy the environment names for ``scheme://host``; None for none (``purpose`` words a refusal)."""
    url = urllib.request.getproxies().get(scheme)
    if not url or urllib.request.proxy_bypass(host):
        return None
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        name = "HTTPS_PROXY" if scheme == "https" else "HTTP_PROXY"
        raise UnusableProxy(f"{name}: only an http:// proxy is supported for {purpose}")
    authorization = None
    if parts.username is not None:
        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(user.encode()).decode("ascii")
    return Proxy(parts.hostname or "", parts.port or 80, authorization)

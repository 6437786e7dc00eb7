"""Keep-alive HTTP(S) connections to one storage origin, for requests the service signs itself.

save-metadata HEADs every object. Measured in a loop of HEADs against the
local SeaweedFS, CPU per call: botocore's head_object ~1,000 µs, urllib3
~310 µs, the standard library's http.client on a kept-alive connection
~140 µs. This module is the part of urllib3 the service needs: a LIFO stack
of idle connections, separate connect and read timeouts, and one silent retry
when a kept-alive connection turns out to have been closed (requests sent
here are idempotent: HEAD, GET, DELETE).

A proxy applies as it does to botocore's own calls (``app/proxies.py``):
``HTTPS_PROXY`` or ``HTTP_PROXY`` by the origin's scheme, unless ``NO_PROXY`` names the host.
HTTPS goes through a CONNECT tunnel, plain HTTP in absolute form. A proxy
reached over https itself is refused at start-up, naming the variable.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..proxies import proxy_for


class Unreachable(Exception):
    """No connection could be made, or it broke before an answer came."""


class TimedOut(Exception):
    """The connection or the answer took longer than its timeout."""


@dataclass(frozen=True)
class HttpResponse:
    """What an answer tells: the status, the headers (names in lower case), and at most a small body."""

    status: int
    headers: dict[str, str]
    body: bytes = b""


class HttpPool:
    """Connections to one origin (scheme, host, port), reused newest first."""

    def __init__(
        self,
        base_url: str,
        *,
        size: int,
        connect_timeout: float,
        read_timeout: float,
        cafile: str | None = None,
    ):
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._size = size
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._context = ssl.create_default_context(cafile=cafile) if self._https else None
        self._proxy = proxy_for(parts.scheme, self._host)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        auth = self._proxy.authorization if self._proxy else None
        self._proxy_headers = {"Proxy-Authorization": auth} if auth else {}
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _new(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        proxy = self._proxy
        host, port = (proxy.host, proxy.port) if proxy else (self._host, self._port)
        if self._context is not None:
            conn = http.client.HTTPSConnection(
                host, port, timeout=self._connect_timeout, context=self._context
            )
            if proxy is not None:
                conn.set_tunnel(self._host, self._port, headers=self._proxy_headers or None)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise TimedOut from None
        except OSError:
            conn.close()
            raise Unreachable from None
        assert conn.sock is not None
        conn.sock.settimeout(self._read_timeout)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, *, max_body: int = 0
    ) -> HttpResponse:
        """Send ``method target`` with no body; keep at most ``max_body`` bytes of the answer's.

        A longer answer (a server that ignored a Range header) is cut off and
        its connection closed rather than read to the end.
        """
        sent = {**self._proxy_headers, **(headers or {})}  # for a plain-HTTP proxy
        with self._lock:
            if self._pid != os.getpid():
                # Inherited across a fork: the parent's sockets, not ours to use.
                self._idle, self._pid = [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._new()
            try:
                if self._proxy is not None and not self._https:
                    # Through a proxy, plain HTTP names the whole URL (RFC 9112 absolute-form).
                    conn.request(method, self._origin + target, headers=sent)
                else:
                    conn.request(method, target, headers=headers or {})
                response = conn.getresponse()
                if max_body:
                    body = response.read(max_body)
                    # Anything more (a Range ignored): stop here and drop the connection.
                    complete = response.isclosed() or response.read(1) == b""
                else:
                    response.read()
                    body, complete = b"", True
            except TimeoutError:
                conn.close()
                raise TimedOut from None
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused:
                    # A kept-alive connection the server had closed: once more, on a new one.
                    conn, reused = None, False
                    continue
                raise Unreachable from None
            break
        answer = {name.lower(): value for name, value in response.getheaders()}
        if response.will_close or not complete:
            conn.close()
        else:
            with self._lock:
                if len(self._idle) < self._size:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
        return HttpResponse(response.status, answer, body)

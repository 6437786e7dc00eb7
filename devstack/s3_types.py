"""A pass-through proxy in front of SeaweedFS's S3 gateway that reports stored types as S3 does.

SeaweedFS stores ``application/octet-stream`` as no type at all (its filer
blanks it, ``normalizeEntryMimeForStore``) and then answers HEAD and GET with
a type guessed from the key's extension: ``notes.ini`` PUT as
``application/octet-stream`` comes back as ``text/plain; charset=utf-8``. It
has no setting to stop this. AWS S3, R2, B2 and Azure return what was sent,
and save-metadata compares the two, so on the local stack an ordinary file
would be refused.

This proxy forwards every request byte for byte (the Host header too, so
SigV4 signatures still hold) and, on a HEAD or GET of an object, asks the
filer what it really stored: when that is nothing, the answer says
``application/octet-stream``. Development and tests only; never in front of a
real provider. Run as ``python devstack/s3_types.py LISTEN_PORT S3_PORT FILER_PORT [BIND_HOST]``
(it needs nothing but the standard library; docker-compose.yml runs it so).
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
OCTET_STREAM = "application/octet-stream"
# Headers that belong to one connection, not to the request (RFC 9110 section 7.6.1);
# Content-Length is set again from the body actually forwarded.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
     "expect", "content-length"}
)  # fmt: skip


def _is_plain_object_read(method: str, path: str, status: int) -> bool:
    """A HEAD or GET of an object itself (no subresource such as ?uploadId, no type override)."""
    if method not in ("HEAD", "GET") or status not in (200, 206, 304):
        return False
    parts = urlsplit(path)
    if parts.path.count("/") < 2 or parts.path.endswith("/"):
        return False  # the service root or a bucket listing
    names = [name.lower() for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    return all(name.startswith(("x-amz-", "response-")) for name in names) and (
        "response-content-type" not in names
    )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream_port = 0
    filer_port = 0

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle's algorithm holds
        # the body back until the client's delayed ACK (40 ms on every GET with a body).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _forward(self) -> None:
        try:
            body = self._body()
        except ValueError:  # a malformed chunk size
            self._fail(400, "Bad Request")
            return
        upstream = http.client.HTTPConnection(HOST, self.upstream_port, timeout=300)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    upstream.putheader(name, value)
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            response = upstream.getresponse()
            data = response.read()
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            length = response.getheader("Content-Length")
            status, reason = response.status, response.reason
            # Headers the upstream named in Connection: belong to its connection only.
            named = {h.strip().lower() for h in (response.getheader("Connection") or "").split(",")}
            headers = [(k, v) for k, v in headers if k.lower() not in named]
        except OSError:  # SeaweedFS is down or restarting: say so, as a gateway would
            self._fail(502, "Bad Gateway")
            return
        finally:
            upstream.close()
        if _is_plain_object_read(self.command, self.path, status) and self._stored_nothing():
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", OCTET_STREAM))
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        # A HEAD answers the object's own length; anything else, the bytes that follow
        # (none at all on a 204 or 304, which carry no Content-Length of their own).
        if self.command == "HEAD" and length:
            self.send_header("Content-Length", length)
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _fail(self, status: int, reason: str) -> None:
        self.send_response_only(status, reason)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _stored_nothing(self) -> bool:
        """Whether the filer holds no type for this object (what application/octet-stream became)."""
        filer = http.client.HTTPConnection(HOST, self.filer_port, timeout=10)
        try:
            filer.request("GET", f"/buckets{urlsplit(self.path).path}?metadata=true")
            response = filer.getresponse()
            document = response.read()
            if response.status != 200:
                return False
            entry = json.loads(document)
        except (OSError, ValueError):
            return False
        finally:
            filer.close()
        return isinstance(entry, dict) and not entry.get("Mime")

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(listen_port: int, upstream_port: int, filer_port: int, bind: str = HOST) -> None:
    """Serve on ``bind:listen_port`` until killed."""
    handler = type("Handler", (_Handler,), {"upstream_port": upstream_port, "filer_port": filer_port})
    server = ThreadingHTTPServer((bind, listen_port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    ports = [int(arg) for arg in sys.argv[1:4]]
    serve(ports[0], ports[1], ports[2], *sys.argv[4:5])

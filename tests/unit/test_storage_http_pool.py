"""The kept-alive HTTP connections the S3 provider sends its own HEADs on."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.storage.http import HttpPool, TimedOut, Unreachable


class Server:
    """A local HTTP/1.1 server that counts connections and can be told to misbehave."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[str] = []
        self.delay = 0.0
        self.close_after_each = False
        self.drop_silently = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.connections += 1

            def do_HEAD(self) -> None:
                outer.requests.append(self.path)
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Length", "12")
                self.send_header("Content-Type", "text/plain")
                self.send_header("ETag", '"abc"')
                if outer.close_after_each:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if outer.drop_silently:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def pool(url: str, **overrides: Any) -> HttpPool:
    options: dict[str, Any] = {"size": 4, "connect_timeout": 1.0, "read_timeout": 1.0, **overrides}
    return HttpPool(url, **options)


def test_connections_are_kept_alive_and_reused(server: Server) -> None:
    http = pool(server.url)
    for n in range(5):
        response = http.request("HEAD", f"/bucket/key-{n}?X-Amz-Signature=x")
        assert response.status == 200
        assert response.headers["content-length"] == "12"
        assert response.headers["etag"] == '"abc"'
    assert server.connections == 1
    assert server.requests[-1] == "/bucket/key-4?X-Amz-Signature=x"


def test_a_connection_the_server_closes_is_not_reused(server: Server) -> None:
    server.close_after_each = True
    http = pool(server.url)
    for _ in range(3):
        assert http.request("HEAD", "/k").status == 200
    assert server.connections == 3


def test_a_kept_alive_connection_the_server_dropped_is_replaced_silently(server: Server) -> None:
    # The server closes each connection after answering, without saying so
    # (as an idle timeout or a restart does): the pooled one is dead.
    server.drop_silently = True
    http = pool(server.url)
    assert http.request("HEAD", "/first").status == 200
    time.sleep(0.1)
    assert http.request("HEAD", "/second").status == 200
    assert server.requests == ["/first", "/second"]
    assert server.connections == 2


def test_a_slow_answer_times_out(server: Server) -> None:
    server.delay = 1.0
    http = pool(server.url, read_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        http.request("HEAD", "/slow")
    assert time.monotonic() - started < 0.9


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Unreachable):
        pool(f"http://127.0.0.1:{port}").request("HEAD", "/k")


def test_idle_connections_are_bounded(server: Server) -> None:
    http = pool(server.url, size=2)
    results: list[int] = []
    server.delay = 0.2

    def one() -> None:
        results.append(http.request("HEAD", "/k").status)

    threads = [threading.Thread(target=one) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 5
    assert len(http._idle) == 2

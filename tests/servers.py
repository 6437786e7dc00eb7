"""Real servers the tests start for themselves: the service as the image runs it, PgBouncer, nginx, Redis,
tinyproxy, and a webhook receiver (an HTTP server in the test's process).

Each of the others is a Debian package that ``make install`` installs (as root); a test
that needs one fails with that instruction when it is missing. Every server
runs in its own process group, on a free port, with its files in a folder
of the test's.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg2.extensions
import pytest
import requests

from devstack.services import ROOT, free_port, port_is_free, stop_process_group

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
# PgBouncer refuses to run as root; PostgreSQL's own tests' user serves.
UNPRIVILEGED_USER = "pgserver"


def _binary(name: str, *fallbacks: str) -> str:
    found = shutil.which(name) or next((path for path in fallbacks if Path(path).exists()), None)
    if found is None:
        pytest.fail(f"{name} not found: make install installs it as root (Debian: apt-get install {name})")
    return found


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 15
    while port_is_free(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} did not start:\n{log.read_text() if log.exists() else ''}")
        time.sleep(0.05)


# -- the service, started as the image starts it ------------------------------------------------


def service_env(
    app_env: dict[str, str], database_url: str, server: str, port: int, **more: str
) -> dict[str, str]:
    """The environment of a service started as the image starts it: migrations first, on ``port``."""
    env = {
        **app_env,
        "DATABASE_URL": database_url,
        "RUN_MIGRATIONS": "1",
        "SERVER": server,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **more,
    }
    env.pop("DB_POOL_SIZE", None)  # sized from WEB_THREADS, as in the image
    return env


def start_service(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Run deploy/entrypoint.sh with ``env``, its output appended to ``log_path``."""
    full_env = {**os.environ, **env}
    full_env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{full_env.get('PATH', '')}"
    with log_path.open("ab") as log:
        # Its own process group, so that a server that will not stop is killed with its workers.
        return subprocess.Popen(
            [str(ENTRYPOINT)], env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_service(proc: subprocess.Popen[bytes], log_path: Path, grace: float = 30) -> None:
    """SIGTERM the server as an orchestrator would; fail, and kill it and its workers, if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        raise AssertionError(f"still running {grace:.0f} s after SIGTERM:\n{log_path.read_text()}") from None


def wait_service_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    """Wait until ``base``/healthz answers; fail with the log if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"entrypoint exited {proc.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(f"{base}/healthz", timeout=1).ok:
                return
        except (requests.ConnectionError, requests.Timeout):
            # Not listening yet, or listening while its workers still start (a loaded machine).
            time.sleep(0.2)
    raise AssertionError("service did not start")


# -- PgBouncer ------------------------------------------------------------------------------------


@dataclass
class PgBouncer:
    """Debian's PgBouncer in ``pool_mode = transaction`` (what Neon's pooled URL is) in front of a server.

    ``upstream`` is a URL of that server (a Unix socket's or a TCP one);
    clients reach any of its databases, as its user, through ``url(...)``.
    As root it runs as an unprivileged user, who is given ``workdir``: a
    folder of its own (its parents must let that user in).
    """

    workdir: Path
    upstream: str
    pool_size: int = 4
    #: after a failed login to the server, PgBouncer refuses clients this long before it tries
    #: again (its default: 15 s), which is how long a database restart outlasts itself for them
    server_login_retry: int = 15
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> PgBouncer:
        """Write the configuration and start the pooler."""
        binary = _binary("pgbouncer", "/usr/sbin/pgbouncer")
        params = psycopg2.extensions.parse_dsn(self.upstream)
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        user = params.get("user", "postgres")
        (self.workdir / "users.txt").write_text(f'"{user}" ""\n')
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={params.get('host', '127.0.0.1')} port={params.get('port', '5432')}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.workdir / 'users.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\nmax_client_conn = 500\n"
            # Clients' own parameters (psycopg2 sends application_name) are passed on.
            "ignore_startup_parameters = extra_float_digits\n"
            f"server_login_retry = {self.server_login_retry}\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\npidfile = {self.workdir / 'pgbouncer.pid'}\n"
        )
        args = [binary, str(self.workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            from pgserver.utils import ensure_user_exists

            ensure_user_exists(UNPRIVILEGED_USER)
            args[1:1] = ["-u", UNPRIVILEGED_USER]
        entry = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
        for item in [self.workdir, *self.workdir.iterdir()]:
            os.chown(item, entry.pw_uid, entry.pw_gid)
        self._proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_listening(self.port, self._proc, self.workdir / "pgbouncer.log", "pgbouncer")
        return self

    def url(self, database_url: str) -> str:
        """The URL of ``database_url``'s database through the pooler."""
        params = psycopg2.extensions.parse_dsn(database_url)
        user = psycopg2.extensions.parse_dsn(self.upstream).get("user", "postgres")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{params['dbname']}"

    def stop(self) -> None:
        """Stop the pooler."""
        stop_process_group(self._proc, grace=10)


# -- nginx ----------------------------------------------------------------------------------------

# The proxy configuration docker-compose.yml runs, which says what is retried and why.
NGINX_SITE = ROOT / "deploy" / "compose" / "nginx.conf"


def nginx_config(port: int, upstream_ports: Sequence[int], workdir: Path) -> str:
    """nginx.conf around deploy/compose/nginx.conf, its replicas and port replaced by ours."""
    site = NGINX_SITE.read_text()
    servers = "".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;\n" for p in upstream_ports)
    site, replaced = re.subn(r"(?m)^    server 127\.0\.0\.1:\d+ .*\n", "", site)
    assert replaced, "deploy/compose/nginx.conf names no replica to replace"
    site = site.replace("upstream replicas {\n", "upstream replicas {\n" + servers, 1)
    site, listens = re.subn(r"(?m)^    listen \d+;", f"    listen 127.0.0.1:{port};", site)
    assert listens == 1, "deploy/compose/nginx.conf must listen on one port"
    return f"""
daemon off;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    log_format upstreams '$request_method $uri $status $upstream_addr $upstream_status';
    access_log {workdir}/access.log upstreams;
{site}
}}
"""


@dataclass
class Nginx:
    """Debian's nginx as the reverse proxy in front of several replicas of the service."""

    workdir: Path
    upstream_ports: Sequence[int]
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        """The proxy's own URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        """Write the configuration and start nginx in the foreground."""
        binary = _binary("nginx", "/usr/sbin/nginx")
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nginx.conf"
        conf.write_text(nginx_config(self.port, self.upstream_ports, self.workdir))
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "stderr.log").open("wb"),
            start_new_session=True,
        )
        _wait_listening(self.port, self._proc, self.workdir / "error.log", "nginx")
        return self

    def access_log(self) -> list[list[str]]:
        """Each access line's fields: method, path, status, upstream addresses, upstream statuses."""
        path = self.workdir / "access.log"
        return [line.split(" ", 4) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        """Stop nginx."""
        stop_process_group(self._proc, grace=10)


# -- Redis ----------------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A Redis of the test's own (keeps nothing on disk), or the one TEST_REDIS_URL names."""

    workdir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _url: str = ""

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._url

    def start(self) -> RedisServer:
        """Start a server, unless TEST_REDIS_URL names one to use."""
        if os.environ.get("TEST_REDIS_URL"):
            self._url = os.environ["TEST_REDIS_URL"]
            return self
        binary = _binary("redis-server", "/usr/bin/redis-server")
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / "redis.log"
        self._proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        _wait_listening(self.port, self._proc, log, "redis-server")
        self._url = f"redis://127.0.0.1:{self.port}/0"
        return self

    def stop(self) -> None:
        """Stop the server (when it is the test's own)."""
        stop_process_group(self._proc, grace=10)


@dataclass
class Tinyproxy:
    """Debian's tinyproxy: a forward proxy whose log names every request it passed on."""

    workdir: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The proxy's URL, as HTTP_PROXY takes it."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        """Its log: a line per request, with the URL it fetched."""
        return self.workdir / "tinyproxy.log"

    def start(self) -> Tinyproxy:
        """Start the proxy on a free port."""
        binary = _binary("tinyproxy", "/usr/bin/tinyproxy")
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "tinyproxy.conf"
        config.write_text(
            f'Port {self.port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nLogFile "{self.log}"\n'
            "LogLevel Info\nMaxClients 20\n"
        )
        self._proc = subprocess.Popen(
            [binary, "-d", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait_listening(self.port, self._proc, self.log, "tinyproxy")
        return self

    def stop(self) -> None:
        """Stop the proxy."""
        stop_process_group(self._proc, grace=10)


# -- A webhook receiver ---------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """An HTTP server that records each POST it is sent; it can answer 500, stall, or not be there yet."""

    port: int
    fail_first: int = 0
    stall_first: int = 0
    stall_seconds: float = 0.0
    delay_seconds: float = 0.0
    #: the body of a 200: "" (none), "huge" (1 TiB announced, 6 MB/s), "endless" (no length, 6 MB/s),
    #: "trickle" (no length, a byte every 0.2 s), "bad-gzip" (said to be gzip, and it is not);
    #: the streams stop after 60 s or when the sender hangs up
    answer: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks?token=receiver-secret"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    n = len(receiver.answers)
                    status = 500 if n < receiver.fail_first else 200
                    receiver.answers.append(status)
                if n < receiver.stall_first:
                    time.sleep(receiver.stall_seconds)  # past the sender's timeout
                time.sleep(receiver.delay_seconds)
                if status == 200:
                    with receiver._lock:
                        receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self._answer(receiver.answer if status == 200 else "")

            def _answer(self, kind: str) -> None:
                if kind == "bad-gzip":
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", "12")
                    self.end_headers()
                    self.wfile.write(b"not gzip at ")
                    return
                if kind in ("", "huge"):
                    self.send_header("Content-Length", str(2**40 if kind else 0))
                self.end_headers()  # HTTP/1.0 without a length: the body ends when the connection does
                chunk, pause = (b".", 0.2) if kind == "trickle" else (b"x" * 65536, 0.01)
                until = time.monotonic() + 60
                while kind and time.monotonic() < until:
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except OSError:  # the sender hung up
                        break
                    time.sleep(pause)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, body in self.received]

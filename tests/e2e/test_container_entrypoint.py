"""The container's start: deploy/entrypoint.sh, run as the image runs it, under each server it supports.

granian (deploy/granian_server.py) is what the image runs; gunicorn
(deploy/gunicorn.conf.py, ``SERVER=gunicorn``) stays supported.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests

from devstack.services import free_port
from tests.servers import service_env
from tests.servers import start_service as start
from tests.servers import stop_service as stop
from tests.servers import wait_service_ready as wait_ready

pytestmark = pytest.mark.integration

SERVERS = ("granian", "gunicorn")
# The logger each server's own lines come from.
SERVER_LOGGER = {"granian": "_granian", "gunicorn": "gunicorn.error"}


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass
class Served:
    server: str
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path
    database_url: str

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def json_logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]


@pytest.fixture
def served(
    server: str, app_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path
) -> Iterator[Served]:
    port = free_port()
    database_url = make_database()  # empty: RUN_MIGRATIONS=1 must build it
    env = service_env(
        app_env,
        database_url,
        server,
        port,
        WEB_CONCURRENCY="2",
        WEB_THREADS="2",
        GUNICORN_GRACEFUL_TIMEOUT="30",
    )
    log_path = tmp_path / "service.log"
    proc = start(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log_path)
        yield Served(server, proc, base, log_path, database_url)
    finally:
        stop(proc, log_path)


def test_entrypoint_migrates_then_serves_the_upload_flow(served: Served) -> None:
    assert any("applied 003_pending_uploads" in line for line in served.log_lines())
    ready = requests.get(f"{served.base}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"

    presigned = requests.post(
        f"{served.base}/s3/presign-upload",
        json={"fileName": "a.txt", "contentType": "text/plain"},
        headers={"X-Request-ID": "req-abc-123"},
        timeout=10,
    )
    assert presigned.status_code == 200
    assert presigned.headers["X-Request-ID"] == "req-abc-123"
    body = presigned.json()
    assert (
        requests.put(body["presignedUrl"], data=b"hi", headers=body["headers"], timeout=10).status_code == 200
    )
    saved = requests.post(
        f"{served.base}/s3/save-metadata", json={"objectKey": body["objectKey"]}, timeout=10
    )
    assert saved.status_code == 201
    assert len(saved.headers["X-Request-ID"]) == 32  # made up when the client sends none


def test_logs_are_json_lines_with_request_context_and_no_secrets(served: Served) -> None:
    presigned = requests.post(
        f"{served.base}/s3/presign-upload",
        json={"fileName": "a.txt", "contentType": "text/plain"},
        headers={"X-Request-ID": "trace-42", "X-User-Id": "alice"},
        timeout=10,
    ).json()
    requests.get(f"{served.base}/nowhere", headers={"X-Request-ID": "bad id {INJECTED}"}, timeout=5)
    time.sleep(0.5)
    lines = [line for line in served.log_lines() if line.strip()]
    # Everything after the migration step's plain output is JSON, the server's own lines included.
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert [line for line in lines[first_json:] if not line.startswith("{")] == []
    logger = SERVER_LOGGER[served.server]
    assert any(json.loads(line)["logger"] == logger for line in lines[first_json:])
    entries = served.json_logs()
    [access] = [e for e in entries if e.get("request_id") == "trace-42"]
    assert access["message"] == "request"
    assert access["method"] == "POST"
    assert access["path"] == "/s3/presign-upload"
    assert access["status"] == 200
    assert access["user_id"] == "alice"
    assert access["duration_ms"] >= 0
    assert {"time", "level", "logger"} <= set(access)
    signature = presigned["presignedUrl"].split("X-Amz-Signature=")[1]
    text = served.log_path.read_text()
    assert signature not in text
    assert "INJECTED" not in text
    for secret_name in ("AWS_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY", "B2_APPLICATION_KEY"):
        assert os.environ.get(secret_name, "never-set-value") not in text


def test_sigterm_lets_in_flight_requests_finish_and_writes_every_presign_record(served: Served) -> None:
    presigned = requests.post(
        f"{served.base}/s3/presign-upload",
        json={"fileName": "a.txt", "contentType": "text/plain"},
        timeout=10,
    ).json()
    put = requests.put(presigned["presignedUrl"], data=b"hi", headers=presigned["headers"], timeout=10)
    assert put.status_code == 200
    blocker = psycopg2.connect(served.database_url)
    result: dict[str, Any] = {}

    def slow_save() -> None:
        response = requests.post(
            f"{served.base}/s3/save-metadata", json={"objectKey": presigned["objectKey"]}, timeout=30
        )
        result["status"] = response.status_code

    try:
        with blocker.cursor() as cur:
            # Holds both the save (its row) and the presign records' writer (their rows).
            cur.execute("LOCK TABLE s3_files, pending_uploads IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=slow_save)
        worker.start()
        time.sleep(1.0)  # the save is now waiting on the lock
        # Presigns answered before the signal, whose records wait behind the lock.
        keys = [
            requests.post(
                f"{served.base}/s3/presign-upload",
                json={"fileName": f"late-{i}.txt", "contentType": "text/plain"},
                timeout=10,
            ).json()["objectKey"]
            for i in range(5)
        ]
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert "status" not in result  # still in flight
    finally:
        blocker.rollback()  # the in-flight request may now finish
        blocker.close()
    worker.join(20)
    assert result.get("status") == 201
    assert served.proc.wait(20) == 0
    # New connections are refused once it has gone.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{served.base}/healthz", timeout=2)
    with psycopg2.connect(served.database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT object_key FROM pending_uploads WHERE object_key = ANY(%s)", (keys,))
        recorded = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT count(*) FROM s3_files WHERE object_key = %s", (presigned["objectKey"],))
        saved = cur.fetchone()
    assert recorded == set(keys)  # flushed on the way out, not lost
    assert saved == (1,)


def test_bad_configuration_stops_start_up_naming_the_variable(
    server: str, app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "bad.log"
    env = {**app_env, "UPLOAD_URL_EXPIRES_SECONDS": "five", "PORT": str(free_port()), "HOST": "127.0.0.1"}
    proc = start({**env, "SERVER": server}, log_path)
    assert proc.wait(30) != 0
    output = log_path.read_text()
    assert "UPLOAD_URL_EXPIRES_SECONDS: expected a whole number, got 'five'" in output
    assert "Traceback" not in output


# Each server's own variables, refused with the service's messages.
BAD_SERVER_VARIABLES = {
    "granian": (
        {
            "WEB_CONCURRENCY": "many",
            "GRACEFUL_TIMEOUT_SECONDS": "soon",
            "HTTP_HEADER_READ_TIMEOUT_SECONDS": "0",
        },
        [
            "WEB_CONCURRENCY: expected a whole number, got 'many'",
            "GRACEFUL_TIMEOUT_SECONDS: expected a whole number, got 'soon'",
            "HTTP_HEADER_READ_TIMEOUT_SECONDS: must be between 1 and 60, got 0",
        ],
    ),
    # (WEB_CONCURRENCY is read by gunicorn itself, before any config file, so it is not among these.)
    "gunicorn": (
        {"GUNICORN_KEEPALIVE": "soon", "GUNICORN_TIMEOUT": "0", "LOG_LEVEL": "loud"},
        [
            "GUNICORN_KEEPALIVE: expected a whole number, got 'soon'",
            "GUNICORN_TIMEOUT: must be between 1 and 3600, got 0",
            "LOG_LEVEL: must be one of debug, info, warning, error, critical, got 'loud'",
        ],
    ),
}


def test_the_servers_own_variables_are_refused_with_the_services_messages(
    server: str, app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    variables, messages = BAD_SERVER_VARIABLES[server]
    env = {**app_env, **variables, "PORT": str(free_port()), "SERVER": server}
    proc = start({**env, "HOST": "127.0.0.1"}, log_path)
    assert proc.wait(30) != 0
    output = log_path.read_text()
    assert "invalid configuration:" in output
    for message in messages:
        assert message in output
    assert "Traceback" not in output


def test_an_unknown_server_is_refused_by_name(app_env: dict[str, str], tmp_path: Path) -> None:
    log_path = tmp_path / "server.log"
    proc = start({**app_env, "SERVER": "uwsgi", "PORT": str(free_port()), "HOST": "127.0.0.1"}, log_path)
    assert proc.wait(30) == 1
    assert "SERVER: must be granian or gunicorn, got 'uwsgi'" in log_path.read_text()


# What each server's limit on a request's life is called, and how its refusal starts.
STORAGE_BUDGET_REFUSALS = {
    "granian": "GRACEFUL_TIMEOUT_SECONDS (45s) must exceed what a worker may need to finish",
    "gunicorn": "GUNICORN_TIMEOUT (30s) must exceed the worst storage call",
}


def test_storage_timeouts_longer_than_the_servers_limit_are_refused(
    server: str, app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "slow.log"
    env = {**app_env, "STORAGE_READ_TIMEOUT_SECONDS": "20", "PORT": str(free_port()), "HOST": "127.0.0.1"}
    proc = start({**env, "SERVER": server}, log_path)
    assert proc.wait(30) != 0
    assert STORAGE_BUDGET_REFUSALS[server] in log_path.read_text()


def closed_by_server(sock: socket.socket) -> bool:
    """Read to the end of what the server sends (an error answer at most); False if it keeps it open."""
    sock.settimeout(2)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        pass  # reset: closed too
    return True


def test_slow_clients_hold_no_request_thread_and_are_cut_off(
    app_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path
) -> None:
    # Under gunicorn's gthread workers a few such connections stop a worker answering
    # anyone (bench/'s slow-client run); granian reads headers outside Python.
    port = free_port()
    env = service_env(
        app_env,
        make_database(),
        "granian",
        port,
        WEB_CONCURRENCY="1",
        WEB_THREADS="2",
        HTTP_HEADER_READ_TIMEOUT_SECONDS="3",
    )
    log_path = tmp_path / "service.log"
    proc = start(env, log_path)
    base = f"http://127.0.0.1:{port}"
    slow: list[socket.socket] = []
    try:
        wait_ready(base, proc, log_path)
        for _ in range(40):  # many more than the worker's two request threads
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        for _ in range(3):
            time.sleep(0.5)
            for sock in slow:
                sock.sendall(b"a")  # one more header byte each, never finishing
            answer = requests.get(f"{base}/healthz", timeout=2)
            assert answer.status_code == 200
        presigned = requests.post(
            f"{base}/s3/presign-upload", json={"fileName": "a.txt", "contentType": "text/plain"}, timeout=2
        )
        assert presigned.status_code == 200
        # Past the header timeout the server has closed every slow connection.
        time.sleep(3.5)
        assert all(closed_by_server(sock) for sock in slow)
    finally:
        for sock in slow:
            sock.close()
        stop(proc, log_path)


def test_bodies_past_the_limit_are_refused_with_json_whichever_the_framing(served: Served) -> None:
    big = b'{"fileName": "' + b"a" * (128 * 1024) + b'", "contentType": "text/plain"}'
    sized = requests.post(
        f"{served.base}/s3/presign-upload", data=big, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert sized.status_code == 413
    assert sized.json()["success"] is False
    assert sized.json()["error"] == "request body is over the 65536 byte limit"
    # Chunked, with no Content-Length: never read past the limit, never a 5xx.
    chunked = requests.post(
        f"{served.base}/s3/presign-upload",
        data=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert chunked.status_code in (400, 413)
    assert chunked.json()["success"] is False


def test_sigterm_while_the_workers_start_stops_at_once(
    app_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path
) -> None:
    # granian's workers install their own SIGTERM handler only once the app is
    # built; one signalled before then used to serve on until killed, 45 s later.
    log_path = tmp_path / "service.log"
    env = service_env(app_env, make_database(), "granian", free_port(), WEB_CONCURRENCY="2")
    proc = start(env, log_path)
    try:
        deadline = time.monotonic() + 60
        while "Spawning worker-2" not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)  # while the workers build the app
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

"""The container's start: deploy/entrypoint.sh and deploy/gunicorn.conf.py, run as the image runs them."""

from __future__ import annotations

import json
import os
import signal
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

from devstack.services import ROOT, free_port

pytestmark = pytest.mark.integration

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    log_path: Path
    database_url: str

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def json_logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_lines() if line.startswith("{")]


def start(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, **env}
    full_env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{full_env.get('PATH', '')}"
    with log_path.open("wb") as log:
        return subprocess.Popen([str(ENTRYPOINT)], env=full_env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(base: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
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


@pytest.fixture
def served(app_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    database_url = make_database()  # empty: RUN_MIGRATIONS=1 must build it
    env = {
        **app_env,
        "DATABASE_URL": database_url,
        "RUN_MIGRATIONS": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "GUNICORN_GRACEFUL_TIMEOUT": "15",
    }
    env.pop("DB_POOL_SIZE", None)
    log_path = tmp_path / "service.log"
    proc = start(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log_path)
        yield Served(proc, base, log_path, database_url)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


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
    # Everything after the migration step's plain output is JSON, gunicorn's own lines included.
    first_json = next(i for i, line in enumerate(lines) if line.startswith("{"))
    assert [line for line in lines[first_json:] if not line.startswith("{")] == []
    assert any(json.loads(line)["logger"] == "gunicorn.error" for line in lines[first_json:])
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


def test_sigterm_lets_in_flight_requests_finish(served: Served) -> None:
    blocker = psycopg2.connect(served.database_url)
    result: dict[str, Any] = {}

    def slow_presign() -> None:
        response = requests.post(
            f"{served.base}/s3/presign-upload",
            json={"fileName": "a.txt", "contentType": "text/plain"},
            timeout=30,
        )
        result["status"] = response.status_code

    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE pending_uploads IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=slow_presign)
        worker.start()
        time.sleep(1.0)  # the request is now waiting on the lock
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
    finally:
        blocker.rollback()  # the in-flight request may now finish
        blocker.close()
    worker.join(20)
    assert result.get("status") == 200
    assert served.proc.wait(20) == 0
    # New connections are refused once it has gone.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{served.base}/healthz", timeout=2)


def test_bad_configuration_stops_start_up_naming_the_variable(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "bad.log"
    env = {**app_env, "UPLOAD_URL_EXPIRES_SECONDS": "five", "PORT": str(free_port()), "HOST": "127.0.0.1"}
    proc = start(env, log_path)
    assert proc.wait(30) != 0
    output = log_path.read_text()
    assert "UPLOAD_URL_EXPIRES_SECONDS: expected a whole number, got 'five'" in output
    assert "Traceback" not in output


def test_the_servers_own_variables_are_refused_with_the_services_messages(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    # (WEB_CONCURRENCY is read by gunicorn itself, before any config file, so it is not among these.)
    env = {**app_env, "GUNICORN_KEEPALIVE": "soon", "GUNICORN_TIMEOUT": "0", "PORT": str(free_port())}
    proc = start({**env, "HOST": "127.0.0.1"}, log_path)
    assert proc.wait(30) != 0
    output = log_path.read_text()
    assert "invalid configuration:" in output
    assert "GUNICORN_KEEPALIVE: expected a whole number, got 'soon'" in output
    assert "GUNICORN_TIMEOUT: must be between 1 and 3600, got 0" in output
    assert "Traceback" not in output


def test_storage_timeouts_longer_than_the_worker_timeout_are_refused(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "slow.log"
    env = {**app_env, "STORAGE_READ_TIMEOUT_SECONDS": "20", "PORT": str(free_port()), "HOST": "127.0.0.1"}
    proc = start(env, log_path)
    assert proc.wait(30) != 0
    assert "GUNICORN_TIMEOUT (30s) must exceed the worst storage call" in log_path.read_text()

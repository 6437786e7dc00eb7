"""The README's first command: `python -m devstack` serves the guides' flow, and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devstack.services import ROOT, free_port

pytestmark = pytest.mark.integration


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits to be reaped by its parent.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_dev_stack_serves_the_upload_flow_and_stops_everything_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "R2_", "B2_", "AZURE_"))}
    env.pop("DATABASE_URL", None)
    env["DEFAULT_PROVIDER"] = "s3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack", "--port", str(port), "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if requests.get(f"{base}/providers", timeout=1).ok:
                    break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.5)
        providers = requests.get(f"{base}/providers", timeout=5).json()["providers"]
        assert [p["name"] for p in providers] == ["s3", "r2", "b2", "azure"]

        presigned = requests.post(
            f"{base}/presign-upload",
            json={"fileName": "test-s3.txt", "contentType": "text/plain"},
            timeout=10,
        ).json()
        put = requests.put(presigned["presignedUrl"], data=b"hi", headers=presigned["headers"], timeout=10)
        assert put.status_code == 200
        saved = requests.post(f"{base}/save-metadata", json={"objectKey": presigned["objectKey"]}, timeout=10)
        assert saved.status_code == 201
        # The emulators answer a browser's preflight from any page.
        preflight = requests.options(
            presigned["presignedUrl"],
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
            timeout=10,
        )
        assert preflight.headers.get("Access-Control-Allow-Origin") in ("*", "http://localhost:5173")
        # The upload page and the Uppy bundle npm installed.
        page = requests.get(f"{base}/", timeout=10)
        assert page.status_code == 200
        assert "Upload files" in page.text
        assert requests.get(f"{base}/assets/uppy/uppy.min.mjs", timeout=10).status_code == 200
    finally:
        children = [
            int((tmp_path / d / f"{n}.pid").read_text())
            for d, n in (("seaweedfs", "weed"), ("azurite", "azurite"))
        ]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    time.sleep(1)
    assert [pid for pid in children if process_alive(pid)] == []
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()

"""Benchmark: our service against the S3 guide's own code, a bare echo and Uppy Companion, in one run.

``python -m bench`` (``make bench``) starts PostgreSQL over TCP with SCRAM
passwords (and TLS where the build has it), SeaweedFS and Azurite, then the
servers side by side: ours as the image runs it (granian) and under gunicorn,
the guide's Python tab taken verbatim from its seed file under plain
gunicorn, a Flask echo under both servers, ours and the guide against a
trust-auth socket as well, and Companion installed from npm. wrk drives them
through the same workloads, round-robin so machine noise hits all alike.
It prints one table per workload and writes the numbers to bench/results/.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import psycopg2
import requests

from app.migrations import apply_migrations
from devstack.services import ROOT, NetworkPostgres, free_port
from devstack.stack import LocalStack

BENCH = Path(__file__).resolve().parent
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
SECRET = "benchmark-secret-that-is-long-enough-for-hs256"  # noqa: S105 - a throwaway signing key
BODY = json.dumps({"fileName": "bench.txt", "contentType": "text/plain"})


@dataclass
class Server:
    """One server process under test: ``argv`` run from the project's root with ``env``."""

    name: str
    argv: list[str]
    port: int
    env: dict[str, str]
    # A path that answers 200 once the server is up (the guide's code has no health route).
    ready_path: str = "/healthz"
    ready_any_answer: bool = False
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, workdir: Path) -> None:
        self.log = workdir / f"{self.name}.log"
        # Ours logs as the image does (LOG_LEVEL=INFO: a JSON access line per request, here to a file).
        level = "INFO" if self.name.startswith("ours") else "WARNING"
        env = {**os.environ, "LOG_LEVEL": level, **self.env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text()[-3000:]
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{tail}")
            try:
                answer = requests.get(f"{self.base}{self.ready_path}", timeout=1)
                if answer.ok or (self.ready_any_answer and answer.status_code < 500):
                    return
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or too busy starting its workers to answer.
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start; see {self.log}")

    def worker_memory_mb(self) -> list[dict[str, float]]:
        """Return peak and current RSS of each worker process, in MB."""
        found = []
        for pid in worker_pids(self) or [self.proc.pid if self.proc else 0]:  # Node: one process
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            fields = dict(line.split(":\t", 1) for line in lines if ":\t" in line)
            found.append(
                {
                    "peak_rss_mb": int(fields["VmHWM"].split()[0]) / 1024,
                    "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
                }
            )
        return found

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


GUIDE_SEED = ROOT.parent / "shared" / "seeds" / "002_0a2ac869f5004238.txt"


def guide_code(seed: Path) -> str:
    """Return the S3 guide's Python tab, verbatim: the first python block after "Tab: Python"."""
    text = seed.read_text()
    after = text[text.index("Tab: Python") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("\n```", start)] + "\n"


def granian_server(name: str, factory: str, port: int, env: dict[str, str]) -> Server:
    """``factory`` served as the image serves the app: deploy/granian_server.py."""
    python = str(ROOT / ".venv" / "bin" / "python")
    return Server(name, [python, "-m", "deploy.granian_server", factory], port, env)


def gunicorn_server(name: str, app_spec: str, port: int, env: dict[str, str]) -> Server:
    """``app_spec`` under the project's gunicorn configuration (deploy/gunicorn.conf.py)."""
    return Server(
        name, ["gunicorn", "--config", str(ROOT / "deploy" / "gunicorn.conf.py"), app_spec], port, env
    )


def guide_server(
    name: str, directory: Path, port: int, env: dict[str, str], workers: str, threads: str
) -> Server:
    """The guide's code (guide_s3.py in ``directory``) under plain gunicorn, as its readers would run it."""
    argv = ["gunicorn", "--chdir", str(directory), "--workers", workers, "--threads", threads,
            "--bind", f"127.0.0.1:{port}", "guide_s3:app"]  # fmt: skip
    # It has no health route: any answer (a 404 for "/") means it is up.
    return Server(name, argv, port, env, ready_path="/", ready_any_answer=True)


COMPANION_PACKAGE = "@uppy/companion@6"


def install_companion(directory: Path) -> Path:
    """``npm install`` Uppy Companion into ``directory`` (once; later runs reuse it); return its binary."""
    binary = directory / "node_modules" / ".bin" / "companion"
    if not binary.exists():
        directory.mkdir(parents=True, exist_ok=True)
        print(f"installing {COMPANION_PACKAGE} from npm into {directory} ...", flush=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(directory), COMPANION_PACKAGE],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
    return binary


def companion_server(binary: Path, workdir: Path, port: int, env: dict[str, str]) -> Server:
    """Companion, standalone, signing for the same bucket of the same S3 emulator as ours."""
    data = workdir / "companion-data"
    data.mkdir(exist_ok=True)
    endpoint = env["S3_ENDPOINT_URL"]
    companion_env = {
        "COMPANION_PORT": str(port),
        "COMPANION_DOMAIN": f"127.0.0.1:{port}",
        "COMPANION_PROTOCOL": "http",
        "COMPANION_DATADIR": str(data),
        "COMPANION_SECRET": "benchmark-companion-secret",
        "COMPANION_PREAUTH_SECRET": "benchmark-companion-preauth",
        "COMPANION_CLIENT_ORIGINS": "true",
        "COMPANION_UPLOAD_URLS": f"{endpoint}/.*",
        "COMPANION_AWS_KEY": env["AWS_ACCESS_KEY_ID"],
        "COMPANION_AWS_SECRET": env["AWS_SECRET_ACCESS_KEY"],
        "COMPANION_AWS_BUCKET": env["S3_BUCKET_NAME"],
        "COMPANION_AWS_REGION": env["AWS_REGION"],
        "COMPANION_AWS_ENDPOINT": endpoint,
        "COMPANION_AWS_FORCE_PATH_STYLE": "true",
        # The AWS SDK would sign a CRC32 of an empty body into every part URL
        # (SeaweedFS then refuses the part): sign only what S3 requires.
        "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED",
        "NODE_ENV": "production",
    }
    # One Node process, as Companion runs standalone; /metrics answers once it is up.
    return Server("companion", [str(binary)], port, companion_env, ready_path="/metrics", cwd=workdir)


def start_parts_upload(base: str, path: str, token: str | None) -> str:
    """Create one upload in parts through a Companion-protocol server; return its part-1 URL path."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"filename": "bench.bin", "type": "application/octet-stream", "metadata": {}}
    created = requests.post(f"{base}{path}/multipart", json=body, headers=headers, timeout=30)
    created.raise_for_status()
    answer = created.json()
    upload_id = requests.utils.quote(answer["uploadId"], safe="")
    return f"{path}/multipart/{upload_id}/1?key={requests.utils.quote(answer['key'], safe='')}"


@dataclass
class Sample:
    """One load-generator run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass
class Workload:
    name: str
    note: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)


def wrk(url: str, script: str, env: dict[str, str], seconds: float, connections: int, threads: int) -> Sample:
    """Run wrk once and read the JSON line our Lua ``done`` prints."""
    run_env = {**os.environ, **env, "BENCH_LUA_DIR": str(LUA), "THREADS": str(threads)}
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(seconds)}s", "--timeout", "10s",
         "-s", str(LUA / script), url],
        capture_output=True, text=True, env=run_env, check=True, timeout=seconds + 60,
    )  # fmt: skip
    line = next(line for line in result.stdout.splitlines() if line.startswith('{"requests"'))
    data = json.loads(line)
    duration = data["duration_us"] / 1e6
    return Sample(
        rps=data["requests"] / duration,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"] + data["non_2xx"],
        requests=data["requests"],
    )


SLOW_CONNECTIONS = 50


class SlowClients:
    """Connections that send a request's headers one byte a second (slowloris), never finishing them."""

    def __init__(self, host: str, port: int, count: int = SLOW_CONNECTIONS):
        self._address, self._count = (host, port), count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-clients", daemon=True)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        time.sleep(2)  # every connection open and started before the load begins
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        request = b"GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Slow: " + b"a" * 100_000
        sockets = []
        for _ in range(self._count):
            try:
                sockets.append(socket.create_connection(self._address, timeout=5))
            except OSError:
                break
        sent = 0
        while not self._stop.wait(1.0) and sent < len(request):
            for sock in list(sockets):
                try:
                    sock.send(request[sent : sent + 1])
                except OSError:
                    sockets.remove(sock)  # the server closed it: what it should do
            sent += 1
        for sock in sockets:
            sock.close()


def health_probe(base: str, seconds: float) -> Sample:
    """GET /healthz in a loop for ``seconds``; a request that takes over 2 s counts as an error."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with requests.Session() as session:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                ok = session.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                ok = False
            latencies.append((time.monotonic() - started) * 1000)
            errors += not ok
            time.sleep(0.05)
    latencies.sort()
    return Sample(
        rps=len(latencies) / seconds,
        p50_ms=latencies[len(latencies) // 2],
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        errors=errors,
        requests=len(latencies),
    )


def presign_and_put(
    session: requests.Session,
    server: Server,
    headers: dict[str, str],
    data: bytes,
    *,
    checksummed: bool = False,
) -> tuple[dict[str, Any], requests.Response]:
    """Presign one small text upload through ``server`` and PUT ``data`` to it.

    ``checksummed``: on ours' own /s3/presign-upload, with the SHA-256 of ``data``.
    """
    path, body = "/presign-upload", BODY
    if checksummed:
        sha256 = base64.b64encode(hashlib.sha256(data).digest()).decode()
        path, body = "/s3/presign-upload", json.dumps({**json.loads(BODY), "checksumSHA256": sha256})
    answer: dict[str, Any] = session.post(
        f"{server.base}{path}",
        data=body,
        headers={**headers, "Content-Type": "application/json"},
        timeout=30,
    ).json()
    put_headers = answer.get("headers") or {"Content-Type": "text/plain"}
    return answer, session.put(answer["presignedUrl"], data=data, headers=put_headers, timeout=30)


def prepare_uploads(
    server: Server, count: int, token: str | None, keys_file: Path, *, checksummed: bool = False
) -> None:
    """Presign and PUT ``count`` small objects through ``server``; write "key<TAB>public URL" lines."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    session_local = threading.local()

    def one(_: int) -> str:
        session = getattr(session_local, "session", None)
        if session is None:
            session = session_local.session = requests.Session()
        answer, response = presign_and_put(
            session, server, headers, b"benchmark bytes", checksummed=checksummed
        )
        response.raise_for_status()
        return f"{answer['objectKey']}\t{answer['publicFileUrl']}"

    with ThreadPoolExecutor(32) as pool:
        keys = list(pool.map(one, range(count)))
    keys_file.write_text("\n".join(keys) + "\n")


def write_guide_keys(count: int, keys_file: Path) -> None:
    """Write ``count`` keys shaped as the guide makes them ("<uuid4>-<name>"), with their public URLs."""
    lines = []
    for _ in range(count):
        key = f"{uuid.uuid4()}-bench.txt"
        lines.append(f"{key}\thttps://bench.s3.us-east-1.amazonaws.com/{key}")
    keys_file.write_text("\n".join(lines) + "\n")


# The listing workload: one table holds 10k rows, another 1M, with the same
# share (one row in ten) owned by the benchmark's user; pages are read at
# random positions. Same code, same route shape (/r2/files, /s3/files).
LISTING_TABLES = {"r2": 10_000, "s3": 1_000_000}
LISTING_OWNER_EVERY = 10

SEED_FILES = """
    INSERT INTO {table} (object_key, file_url, user_id, file_name, content_type, size_bytes, etag)
    SELECT 'seed-' || g || '-file.txt', 'https://example.invalid/seed-' || g,
           CASE WHEN g %% %(every)s = 0 THEN %(owner)s ELSE 'other-' || (g %% 997) END,
           'file.txt', 'text/plain', 100, 'etag'
    FROM generate_series(1, %(rows)s) AS g
"""


def seed_listing(database_url: str, owner: str, cursors_dir: Path) -> dict[str, Path]:
    """Fill r2_files and s3_files for the listing workload; write a file of cursors for each."""
    from app.uploads.files import encode_cursor

    files = {}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        for provider, rows in LISTING_TABLES.items():
            table = f"{provider}_files"
            cur.execute(f"TRUNCATE {table} RESTART IDENTITY")
            cur.execute(
                SEED_FILES.format(table=table), {"every": LISTING_OWNER_EVERY, "owner": owner, "rows": rows}
            )
            cur.execute(f"ANALYZE {table}")
            path = cursors_dir / f"cursors-{provider}.txt"
            # Evenly spread positions, so each run reads pages from the whole table.
            step = max(1, rows // 5000)
            path.write_text("\n".join(encode_cursor(i) for i in range(rows, 0, -step)) + "\n")
            files[provider] = path
    return files


def cycle(server: Server, token: str | None, seconds: float, concurrency: int) -> Sample:
    """Presign, PUT a small object, save: as many full cycles as ``concurrency`` clients manage."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def client() -> None:
        nonlocal errors
        session = requests.Session()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                answer, put = presign_and_put(session, server, headers, b"cycle bytes")
                saved = session.post(
                    f"{server.base}/save-metadata",
                    json={"objectKey": answer["objectKey"], "publicFileUrl": answer["publicFileUrl"]},
                    headers=headers,
                    timeout=30,
                )
                ok = put.ok and saved.status_code in (200, 201)
            except (requests.RequestException, KeyError, ValueError):
                ok = False
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration = time.monotonic() - started
    ordered = sorted(latencies) or [0.0]
    return Sample(
        rps=len(latencies) / duration,
        p50_ms=ordered[len(ordered) // 2] * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        errors=errors,
        requests=len(latencies),
    )


def worker_pids(server: Server) -> list[int]:
    assert server.proc is not None
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"\nPPid:\t{server.proc.pid}\n" in text:
            pids.append(int(status.parent.name))
    return sorted(pids)


def profile_run(server: Server, run: Any, seconds: int, out: Path, connections: int, threads: int) -> None:
    """Run ``run()`` while py-spy samples one worker's GIL-holding threads; print the heaviest frames.

    ``out`` gets the collapsed stacks (one ``frame;frame;... count`` per line),
    which speedscope or flamegraph.pl turn into a picture.
    """
    spy = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    pid = worker_pids(server)[0]
    recorder = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--gil",
         "--nonblocking", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sample = run(seconds, connections, threads)
    recorder.wait(seconds + 30)
    print(f"  {sample.rps:.0f} req/s while profiled (sampling slows it a little)")
    inclusive: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for frame in {f.split(" (")[0] for f in stack.split(";")}:
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    print(f"  py-spy, worker {pid}, {total} samples holding the GIL; heaviest frames (inclusive):")
    skip = ("Thread.", "_worker", "_WorkItem", "<module>", "run", "Arbiter", "Application", "Worker")
    shown = 0
    for frame, count in sorted(inclusive.items(), key=lambda item: -item[1]):
        if frame.startswith(skip):
            continue
        print(f"    {count / max(total, 1) * 100:5.1f}%  {frame}")
        shown += 1
        if shown == 25:
            break
    print(f"  stacks: {out.relative_to(ROOT)}")


def median_sample(samples: list[Sample]) -> Sample:
    return Sample(
        rps=statistics.median(s.rps for s in samples),
        p50_ms=statistics.median(s.p50_ms for s in samples),
        p99_ms=statistics.median(s.p99_ms for s in samples),
        errors=sum(s.errors for s in samples),
        requests=sum(s.requests for s in samples),
    )


# Any well-formed secret: no receiver answers at the bench's WEBHOOK_URLS (no worker runs).
BENCH_WEBHOOK_SECRET = "whsec_" + "QkVOQ0hCRU5DSEJFTkNIQkVOQ0hCRU5DSEJFTkNI"


# The ratios each table prints, where both rows ran (rows of one workload).
RATIOS = [
    ("ours", "guide"),
    ("ours", "echo"),
    ("ours-gunicorn", "guide"),
    ("ours-gunicorn", "echo-gunicorn"),
    ("ours", "ours-gunicorn"),
    ("echo", "echo-gunicorn"),
    ("write-once", "ours"),
    ("checksummed", "ours"),
    ("ours+metrics", "ours"),
    ("ours+events", "ours"),
    ("ours+quotas", "ours"),
    ("ours-trust", "guide-trust"),
    ("ours params", "companion params"),
    ("ours part", "companion part"),
    ("ours presign", "ours-gunicorn presign"),
]


def print_table(workload: Workload) -> dict[str, Any]:
    print(f"\n## {workload.name}" + (f"  ({workload.note})" if workload.note else ""))
    print(f"{'server':<22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}  rounds (req/s)")
    medians = {name: median_sample(samples) for name, samples in workload.samples.items()}
    for name, sample in medians.items():
        rounds = ", ".join(f"{s.rps:.0f}" for s in workload.samples[name])
        row = f"{name:<22} {sample.rps:>9.0f} {sample.p50_ms:>8.2f} {sample.p99_ms:>8.2f} {sample.errors:>7}"
        print(f"{row}  {rounds}")
    ratios = {}
    for top, bottom in RATIOS:
        if top in medians and bottom in medians and medians[bottom].rps:
            ratios[f"{top}/{bottom}"] = medians[top].rps / medians[bottom].rps
    if ratios:
        print("  " + "   ".join(f"{k}: {v:.2f}x" for k, v in ratios.items()))
    return {
        "note": workload.note,
        "median": {k: vars(v) for k, v in medians.items()},
        "rounds": {k: [vars(s) for s in v] for k, v in workload.samples.items()},
        "ratios": ratios,
    }


WORKLOADS = ("presign", "save", "cycle", "companion", "listing", "slow")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", default="2", help="worker processes of every Python server")
    parser.add_argument("--threads", default="4", help="request threads per worker of every Python server")
    parser.add_argument(
        "--guide-file",
        type=Path,
        default=GUIDE_SEED,
        help="the S3 guide whose Python tab is served, verbatim, as the guide's row",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the rounds, one more run per workload with py-spy on one of ours' workers",
    )
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated workloads to run ({', '.join(WORKLOADS)}); default all",
    )
    parser.add_argument(
        "--companion-dir",
        type=Path,
        default=Path.home() / ".cache" / "upload-bench" / "companion-6",
        help=f"where {COMPANION_PACKAGE} is installed from npm (once)",
    )
    args = parser.parse_args(argv)
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = chosen - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) in --only: {', '.join(sorted(unknown))}")
    if shutil.which("wrk") is None:
        print("wrk not found: install it (Debian: apt-get install wrk)", file=sys.stderr)
        return 2

    workdir = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    postgres = NetworkPostgres(workdir / "postgres")
    # SeaweedFS itself, without the dev stack's type proxy: the numbers are the service's.
    stack = LocalStack(workdir / "stack", s3_port=None, azurite_port=None, exact_types=False)
    servers: list[Server] = []
    try:
        print("starting PostgreSQL (TCP, SCRAM, TLS if available), SeaweedFS and Azurite ...", flush=True)
        database_url = postgres.start()
        trust_url = postgres.trust_url()
        env = stack.start({"DATABASE_URL": database_url})
        env.update(
            DATABASE_URL=database_url,
            AUTH_MODE="jwt",
            AUTH_JWT_SECRET=SECRET,
            RATE_LIMIT_PRESIGN="100000000/minute",
            RATE_LIMIT_SAVE="100000000/minute",
            RATE_LIMIT_FILES="100000000/minute",
            RATE_LIMIT_PARTS="100000000/minute",
            WEB_CONCURRENCY=args.workers,
            WEB_THREADS=args.threads,
        )
        apply_migrations(database_url)
        token = jwt.encode(
            {"sub": "bench-user", "exp": int(time.time()) + 24 * 3600}, SECRET, algorithm="HS256"
        )
        guide_dir = workdir / "guide"
        guide_dir.mkdir()
        have_guide = args.guide_file.is_file()
        if have_guide:
            (guide_dir / "guide_s3.py").write_text(guide_code(args.guide_file))
        else:
            print(f"note: {args.guide_file} not found (--guide-file): the guide's rows are left out")
        # The guide's code as written: its boto3 client reaches the emulator through
        # boto3's own AWS_ENDPOINT_URL_S3, so not a line of it changes.
        guide_env = {**env, "AWS_ENDPOINT_URL_S3": env["S3_ENDPOINT_URL"]}
        trust_env = {**env, "DATABASE_URL": trust_url}
        w, t = args.workers, args.threads
        ours = granian_server("ours", "app:create_app", free_port(), env)
        # ours with its metrics served (METRICS_PORT): each worker's counts in files, the client's
        # multi-process mode, against ours whose counts stay in memory: that mode's cost, side by side.
        metrics_env = {
            **env,
            "METRICS_PORT": str(free_port()),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        }
        # ours writing an event per save to the outbox (WEBHOOK_URLS set; no worker runs), and
        # ours enforcing quotas (a presign reserves under its user's lock; a save checks):
        # each one's cost on the same routes, side by side.
        events_env = {
            **env,
            "WEBHOOK_URLS": "http://127.0.0.1:9/hooks",
            "WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
        }
        quotas_env = {
            **env,
            "QUOTA_BYTES_PER_USER": str(10**15),
            "QUOTA_UNSAVED_UPLOADS_PER_USER": str(10**9),
        }
        servers = [
            ours,
            granian_server("ours-metrics", "app:create_app", free_port(), metrics_env),
            granian_server("ours-events", "app:create_app", free_port(), events_env),
            granian_server("ours-quotas", "app:create_app", free_port(), quotas_env),
            gunicorn_server("ours-gunicorn", "app:create_app()", free_port(), env),
            granian_server("ours-trust", "app:create_app", free_port(), trust_env),
            guide_server("guide", guide_dir, free_port(), guide_env, w, t),
            guide_server(
                "guide-trust", guide_dir, free_port(), {**guide_env, "DATABASE_URL": trust_url}, w, t
            ),
            granian_server("echo", "bench.apps.echo:create_app", free_port(), env),
            gunicorn_server("echo-gunicorn", "bench.apps.echo:create_app()", free_port(), env),
        ]
        if "companion" in chosen:
            binary = install_companion(args.companion_dir)
            servers.append(companion_server(binary, workdir, free_port(), env))
        by_name = {server.name: server for server in servers}
        for server in servers:
            server.start(workdir)

        presign = Workload(
            "presign",
            "ours (granian, as the image runs it) verifies a JWT, signs SigV4 and records the key; "
            "the guide's code does none of that",
        )
        save = Workload(
            "save-metadata",
            "ours reads each object's first bytes and checks it; the guide's code inserts what it is sent. "
            "guide, ours: TCP+SCRAM+TLS PostgreSQL; *-trust: the same server over its socket, trust auth",
        )
        full = Workload("presign -> PUT -> save cycle", f"{16} concurrent clients, cycles/s")
        listing = Workload(
            "listing",
            "ours only: GET /P/files?limit=20 at random cursors; 1 row in 10 is the caller's; "
            "each page signs 20 download URLs",
        )
        slow = Workload(
            "slow clients",
            f"{SLOW_CONNECTIONS} connections sending headers one byte a second: presign at 16 "
            "connections (wrk) and a /healthz probe (errors: no answer within 2 s)",
        )
        companion = Workload(
            "Uppy Companion's S3 protocol",
            "ours at /s3/s3/... with a JWT, Companion (one Node process, as it runs standalone) with "
            "no auth; params: one upload's signature, part: one part's URL",
        )
        companion_rows: list[tuple[str, str, str]] = []
        if "companion" in chosen:
            params = "/params?filename=bench.txt&type=text/plain"
            companion_rows = [
                ("ours params", "ours", f"/s3/s3{params}"),
                ("companion params", "companion", f"/s3{params}"),
                ("ours part", "ours", start_parts_upload(ours.base, "/s3/s3", token)),
                ("companion part", "companion", start_parts_upload(by_name["companion"].base, "/s3", None)),
            ]
        cursors = seed_listing(database_url, "bench-user", workdir) if "listing" in chosen else {}
        conn, sec = args.connections, args.seconds
        # Rows of each workload: (row name, server, path).
        presign_rows = [
            ("ours", "ours", "/presign-upload"),
            ("ours-gunicorn", "ours-gunicorn", "/presign-upload"),
            ("ours+metrics", "ours-metrics", "/presign-upload"),
            ("ours+quotas", "ours-quotas", "/presign-upload"),
            # write-once: ours on its own route, /s3/presign-upload, which signs If-None-Match: *
            # (the guides' /presign-upload keeps the guides' PUT): the condition's cost, side by side.
            ("write-once", "ours", "/s3/presign-upload"),
            ("guide", "guide", "/presign-upload"),
            ("echo", "echo", "/echo"),
            ("echo-gunicorn", "echo-gunicorn", "/echo"),
        ]
        save_rows = [
            ("ours", "ours", "/save-metadata"),
            ("ours-gunicorn", "ours-gunicorn", "/save-metadata"),
            ("ours+metrics", "ours-metrics", "/save-metadata"),
            ("ours+events", "ours-events", "/save-metadata"),
            ("ours+quotas", "ours-quotas", "/save-metadata"),
            # checksummed: ours saving keys presigned with a SHA-256 (its checks' cost, side by side).
            ("checksummed", "ours", "/s3/save-metadata"),
            ("guide", "guide", "/save-metadata"),
            ("ours-trust", "ours-trust", "/save-metadata"),
            ("guide-trust", "guide-trust", "/save-metadata"),
        ]
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds} ...", flush=True)
            for name, server_name, path in presign_rows if "presign" in chosen else ():
                if server_name not in by_name:
                    continue
                server = by_name[server_name]
                wrk_env = {"BODY": BODY, "TOKEN": token if server_name.startswith("ours") else ""}
                sample = wrk(server.base + path, "post_json.lua", wrk_env, sec, conn, args.wrk_threads)
                presign.samples.setdefault(name, []).append(sample)
            for name, server_name, path in save_rows if "save" in chosen else ():
                if server_name not in by_name:
                    continue
                server = by_name[server_name]
                is_ours = server_name.startswith("ours")
                keys_file = workdir / f"keys-{name}-{round_number}.txt"
                # Enough fresh keys for the whole run: 1.5x the last round's rate.
                earlier = save.samples.get(name)
                count = max(1000, int((earlier[-1].rps if earlier else 800) * 1.5 * sec))
                if is_ours:
                    prepare_uploads(server, count, token, keys_file, checksummed=name == "checksummed")
                else:
                    # The guide's save never looks at the storage: any new key will do.
                    write_guide_keys(count, keys_file)
                save_env = {"KEYS_FILE": str(keys_file), "TOKEN": token if is_ours else ""}
                sample = wrk(server.base + path, "save.lua", save_env, sec, conn, args.wrk_threads)
                if sample.requests >= count:
                    print(f"  note: {name} saved all {count} prepared keys; its rate is a lower bound")
                save.samples.setdefault(name, []).append(sample)
            for name in ("ours", "ours-gunicorn", "guide") if "cycle" in chosen else ():
                if name not in by_name:
                    continue
                server = by_name[name]
                cycle_token = token if name.startswith("ours") else None
                full.samples.setdefault(name, []).append(cycle(server, cycle_token, sec, 16))
            for name, server_name, path in companion_rows:
                server = by_name[server_name]
                wrk_env = {"TOKEN": token if server_name == "ours" else ""}
                sample = wrk(server.base + path, "get.lua", wrk_env, sec, conn, args.wrk_threads)
                companion.samples.setdefault(name, []).append(sample)
            for provider, cursors_file in cursors.items():
                label = f"{LISTING_TABLES[provider] // 1000}k rows"
                list_env = {
                    "CURSORS_FILE": str(cursors_file),
                    "TOKEN": token,
                    "LIST_PATH": f"/{provider}/files",
                }
                sample = wrk(
                    ours.base + f"/{provider}/files", "list.lua", list_env, sec, conn, args.wrk_threads
                )
                listing.samples.setdefault(label, []).append(sample)
            for server_name in ("ours", "ours-gunicorn") if "slow" in chosen else ():
                # 50 slowloris connections open: presign at 16 connections, and /healthz.
                server = by_name[server_name]
                wrk_env = {"BODY": BODY, "TOKEN": token}
                with SlowClients("127.0.0.1", server.port), ThreadPoolExecutor(1) as pool:
                    probe = pool.submit(health_probe, server.base, sec)
                    sample = wrk(
                        server.base + "/presign-upload", "post_json.lua", wrk_env, sec, 16, args.wrk_threads
                    )
                    health = probe.result()
                slow.samples.setdefault(f"{server_name} presign", []).append(sample)
                slow.samples.setdefault(f"{server_name} healthz", []).append(health)

        memory = {s.name: s.worker_memory_mb() for s in servers}
        if args.profile:
            RESULTS.mkdir(exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            if "presign" in chosen:
                print("\nprofiling ours: presign", flush=True)
                presign_env = {"BODY": BODY, "TOKEN": token}
                profile_run(
                    ours,
                    functools.partial(wrk, f"{ours.base}/presign-upload", "post_json.lua", presign_env),
                    sec,
                    RESULTS / f"profile-presign-{stamp}.txt",
                    conn,
                    args.wrk_threads,
                )
            if "save" in chosen:
                print("\nprofiling ours: save-metadata", flush=True)
                keys_file = workdir / "keys-profile.txt"
                prepare_uploads(ours, int(3000 * 1.5 * sec), token, keys_file)
                save_env = {"KEYS_FILE": str(keys_file), "TOKEN": token}
                profile_run(
                    ours,
                    functools.partial(wrk, f"{ours.base}/save-metadata", "save.lua", save_env),
                    sec,
                    RESULTS / f"profile-save-{stamp}.txt",
                    conn,
                    args.wrk_threads,
                )
        results: dict[str, Any] = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "settings": vars(args)
            | {
                "guide_file": str(args.guide_file),
                "companion_dir": str(args.companion_dir),
                "database_tls": postgres.tls,
            },
            "workloads": {},
        }
        print(f"\nwrk {conn} connections, {sec:.0f} s runs, {args.rounds} interleaved rounds; "
              f"{args.workers} workers x {args.threads} threads per Python server; medians")  # fmt: skip
        for workload in (presign, save, full, companion, slow):
            if not workload.samples:
                continue
            results["workloads"][workload.name] = print_table(workload)
        if listing.samples:
            results["workloads"]["listing"] = print_table(listing)
            small, large = (median_sample(v) for v in listing.samples.values())
            ratio = large.p50_ms / small.p50_ms
            print(f"  p50 at 1M rows / p50 at 10k rows: {ratio:.2f}x (target: at most 1.3x)")
            results["workloads"]["listing"]["ratios"] = {"p50 1M/10k": ratio}
        print("\n## memory per worker after the run (MB)")
        for name, workers in memory.items():
            peaks = ", ".join(f"peak {w['peak_rss_mb']:.0f} / now {w['rss_mb']:.0f}" for w in workers)
            print(f"{name:<22} {peaks}")
        results["memory_mb"] = memory
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"bench-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwritten to {out.relative_to(ROOT)}")
        with psycopg2.connect(database_url) as check, check.cursor() as cur:
            cur.execute("SELECT count(*) FROM s3_files")
            print(f"(rows in s3_files after the run: {cur.fetchone()[0]})")  # type: ignore[index]
    finally:
        for server in servers:
            server.stop()
        stack.stop()
        postgres.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

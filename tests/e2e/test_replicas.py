"""Three replicas behind a real nginx, sharing PostgreSQL (through PgBouncer, as Neon's pooled URL) and Redis.

The production topology of the README's "Several replicas", started here as
processes: each replica is deploy/entrypoint.sh (migrations, then granian)
on a port of its own; nginx balances them with the retry rules of
deploy/compose/nginx.conf; rate limits count in one Redis; the
replicas reach the database through a transaction pooler and migrate on
the direct URL. The tests run in order on one cluster (module scope).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app.migrations import discover
from devstack.services import ROOT, free_port
from tests.servers import (
    Nginx,
    PgBouncer,
    RedisServer,
    service_env,
    start_service,
    stop_service,
    wait_service_ready,
)

pytestmark = pytest.mark.integration

REPLICAS = 3
PRESIGN_LIMIT = 20  # a minute, per user
ARTIFACTS = ROOT / "tests" / "artifacts"


@dataclass
class Replica:
    name: str
    port: int
    metrics_port: int
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_service(self.env, self.log_path)

    def wait_ready(self) -> None:
        assert self.proc is not None
        wait_service_ready(self.base, self.proc, self.log_path)

    def stop(self) -> None:
        if self.proc is not None:
            stop_service(self.proc, self.log_path, grace=60)

    def kill(self) -> None:
        """SIGKILL the replica and its workers, as a container runtime's kill does."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def metric(self, name: str, **labels: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        wanted = set(labels.items())
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and wanted <= set(sample.labels.items())
        )


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx: Nginx
    direct_url: str
    env: dict[str, str]
    workdir: Path

    def sum_metric(self, name: str, **labels: str) -> float:
        return sum(replica.metric(name, **labels) for replica in self.replicas)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.direct_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def flask(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `flask` command as an operator would in a replica's container."""
        env = {**os.environ, **self.env, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}"}
        return subprocess.run(
            ["flask", "--app", "app", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def cluster(
    app_env: dict[str, str], make_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    direct = make_database()  # empty: the three replicas migrate it as they start
    # A folder of its own: PgBouncer runs as an unprivileged user, who must own it.
    pooler = PgBouncer(tmp_path_factory.mktemp("replicas-pgbouncer"), direct, pool_size=10).start()
    redis = RedisServer(workdir / "redis").start()
    suffix = uuid.uuid4().hex[:8]
    common = {
        **app_env,
        "DATABASE_URL": pooler.url(direct),
        "DATABASE_URL_UNPOOLED": direct,
        "RATE_LIMIT_STORAGE_URI": redis.url,
        "RATE_LIMIT_PRESIGN": f"{PRESIGN_LIMIT}/minute",
        "TRUSTED_PROXY_COUNT": "1",
        # A bucket of their own: reconcile --fix deletes what the database does not know.
        "S3_BUCKET_NAME": f"replicas-{suffix}",
        "SWEEP_INTERVAL_SECONDS": "1",
        "SWEEP_GRACE_SECONDS": "0",
        "UPLOAD_URL_EXPIRES_SECONDS": "120",
    }
    replicas = []
    for n in range(1, REPLICAS + 1):
        port, metrics_port = free_port(), free_port()
        env = service_env(
            common,
            common["DATABASE_URL"],
            "granian",
            port,
            WEB_CONCURRENCY="1",
            WEB_THREADS="4",
            METRICS_PORT=str(metrics_port),
            PROMETHEUS_MULTIPROC_DIR=str(workdir / f"metrics-{n}"),
        )
        replicas.append(Replica(f"replica-{n}", port, metrics_port, env, workdir / f"replica-{n}.log"))
    nginx = Nginx(workdir / "nginx", [r.port for r in replicas]).start()
    cluster = Cluster(replicas, nginx, direct, common, workdir)
    created = cluster.flask("storage", "create-buckets")
    assert created.returncode == 0, created.stderr
    try:
        for replica in replicas:  # all three at once, each migrating first
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        yield cluster
    finally:
        for replica in replicas:
            replica.stop()
        nginx.stop()
        redis.stop()
        pooler.stop()


def test_three_replicas_migrating_at_once_leave_one_schema(cluster: Cluster) -> None:
    applied = cluster.query("SELECT version FROM schema_migrations ORDER BY version")
    assert [row[0] for row in applied] == [m.version for m in discover()]
    logs = [replica.log_path.read_text() for replica in cluster.replicas]
    # One replica applied every file; the others waited for its lock and found nothing to do.
    assert sorted(log.count("applied 001_guide_tables") for log in logs) == [0, 0, 1]
    applied_counts = [re.findall(r"(?m)^(\d+) migration\(s\) applied", log) for log in logs]
    assert sorted(int(n) for counts in applied_counts for n in counts) == [0, 0, len(discover())]


def test_a_users_presign_limit_holds_across_replicas(cluster: Cluster) -> None:
    user = f"limited-{uuid.uuid4().hex[:8]}"
    statuses = []
    for i in range(PRESIGN_LIMIT * 2):
        answer = requests.post(
            f"{cluster.nginx.base}/s3/presign-upload",
            json={"fileName": f"l{i}.txt", "contentType": "text/plain"},
            headers={"X-User-Id": user},
            timeout=10,
        )
        statuses.append(answer.status_code)
    assert statuses.count(200) == PRESIGN_LIMIT, statuses
    assert statuses.count(429) == PRESIGN_LIMIT
    # Every replica answered some of them: N in all, not N per replica.
    served_by = {
        fields[3]
        for fields in cluster.nginx.access_log()
        if fields[1] == "/s3/presign-upload" and fields[2] in ("200", "429")
    }
    assert len(served_by) == REPLICAS, served_by
    assert cluster.sum_metric("upload_rate_limit_refusals_total", scope="presign") == PRESIGN_LIMIT


def test_a_key_issued_by_one_replica_saves_through_another(cluster: Cluster) -> None:
    first, second, third = cluster.replicas
    user = {"X-User-Id": f"crossing-{uuid.uuid4().hex[:8]}"}
    presigned = requests.post(
        f"{first.base}/s3/presign-upload",
        json={"fileName": "crossing.txt", "contentType": "text/plain", "fileSize": 5},
        headers=user,
        timeout=10,
    ).json()
    assert requests.put(presigned["presignedUrl"], data=b"cross", headers=presigned["headers"], timeout=10).ok
    saved = requests.post(
        f"{second.base}/s3/save-metadata",
        json={"objectKey": presigned["objectKey"]},
        headers=user,
        timeout=10,
    )
    assert saved.status_code == 201, saved.text
    again = requests.post(
        f"{third.base}/s3/save-metadata", json={"objectKey": presigned["objectKey"]}, headers=user, timeout=10
    )
    assert again.status_code == 200
    assert again.json()["file"]["id"] == saved.json()["file"]["id"]


def abandon(base: str, count: int) -> list[str]:
    """Presign and upload ``count`` files and never save them; return their keys."""
    keys = []
    for i in range(count):
        presigned = requests.post(
            f"{base}/s3/presign-upload",
            json={"fileName": f"abandoned-{i}.txt", "contentType": "text/plain", "fileSize": 1},
            headers={"X-User-Id": f"abandoner-{uuid.uuid4().hex[:8]}"},
            timeout=10,
        ).json()
        assert requests.put(presigned["presignedUrl"], data=b"x", headers=presigned["headers"], timeout=10).ok
        keys.append(presigned["objectKey"])
    return keys


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return check()


def test_the_replicas_background_sweeps_share_the_work_and_never_repeat_it(cluster: Cluster) -> None:
    before = cluster.sum_metric("upload_sweep_uploads_total", provider="s3", result="swept")
    started_at = cluster.query("SELECT now()")[0][0]
    keys = abandon(cluster.nginx.base, 30)

    def recorded() -> bool:
        rows = cluster.query("SELECT count(*) FROM pending_uploads WHERE object_key = ANY(%s)", (keys,))
        return bool(rows[0][0] == len(keys))

    assert eventually(recorded, 10)
    # As if an hour had passed: presigned long ago, URLs expired. The three replicas'
    # sweepers (every second each) race for them.
    cluster.query(
        "UPDATE pending_uploads SET created_at = now() - interval '1 hour',"
        " expires_at = now() - interval '1 second' WHERE object_key = ANY(%s)",
        (keys,),
    )

    def all_swept() -> bool:
        rows = cluster.query(
            "SELECT count(*) FROM pending_uploads WHERE object_key = ANY(%s) AND swept_at IS NOT NULL",
            (keys,),
        )
        return bool(rows[0][0] == len(keys))

    assert eventually(all_swept)
    time.sleep(2)  # every round that could have claimed one has finished
    swept = cluster.sum_metric("upload_sweep_uploads_total", provider="s3", result="swept") - before
    # Once each, between the three: as many as the table says were swept meanwhile (ours,
    # and any earlier test's whose URL expired).
    in_table = cluster.query("SELECT count(*) FROM pending_uploads WHERE swept_at >= %s", (started_at,))
    assert swept == in_table[0][0] >= len(keys)
    per_replica = [r.metric("upload_sweep_runs_total", outcome="ok") for r in cluster.replicas]
    assert all(runs > 0 for runs in per_replica), per_replica


FIXED_ORPHANS = re.compile(r"^objects with no row\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)


def test_reconciles_on_two_replicas_at_once_delete_each_orphan_once(cluster: Cluster) -> None:
    keys = abandon(cluster.nginx.base, 20)
    time.sleep(1)
    # As if the replica that presigned them had been killed before writing their records.
    cluster.query("DELETE FROM pending_uploads WHERE object_key = ANY(%s)", (keys,))
    results: list[subprocess.CompletedProcess[str]] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        results.append(cluster.flask("storage", "reconcile", "s3", "--fix", "--grace", "0s"))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    deleted = []
    for result in results:
        match = FIXED_ORPHANS.search(result.stdout)
        assert match, result.stdout + result.stderr
        deleted.append(int(match.group(3)))
    assert sum(deleted) == len(keys), [r.stdout for r in results]
    remaining = cluster.flask("storage", "reconcile", "s3", "--grace", "0s")
    assert remaining.returncode == 0, remaining.stdout


@dataclass
class Load:
    """Clients cycling presign -> PUT -> save through nginx; every fifth upload is never saved."""

    base: str
    threads: int = 8
    issued: dict[str, float] = field(default_factory=dict)  # key -> when its presign was answered
    saved: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _call(self, session: requests.Session, path: str, body: dict[str, Any], user: str) -> Any:
        try:
            answer = session.post(f"{self.base}{path}", json=body, headers={"X-User-Id": user}, timeout=60)
        except requests.RequestException as exc:
            with self._lock:
                self.requests += 1
                self.failures.append(f"{path}: {type(exc).__name__}")
            return None
        with self._lock:
            self.requests += 1
            if answer.status_code not in (200, 201):
                self.failures.append(f"{path}: {answer.status_code} {answer.text[:200]}")
                return None
        return answer.json()

    def _run(self, n: int) -> None:
        session = requests.Session()
        cycle = 0
        while not self._stop.is_set():
            cycle += 1
            user = f"load-{n}-{cycle}"  # a user per cycle: the presign limit never applies
            body = {"fileName": f"load-{n}-{cycle}.txt", "contentType": "text/plain", "fileSize": 4}
            presigned = self._call(session, "/s3/presign-upload", body, user)
            if presigned is None:
                continue
            key = presigned["objectKey"]
            with self._lock:
                self.issued[key] = time.monotonic()
            put = requests.put(
                presigned["presignedUrl"], data=b"load", headers=presigned["headers"], timeout=30
            )
            if not put.ok:
                with self._lock:
                    self.failures.append(f"PUT: {put.status_code}")
                continue
            if cycle % 5 == 0:
                with self._lock:
                    self.abandoned.append(key)
                continue
            if self._call(session, "/s3/save-metadata", {"objectKey": key}, user) is not None:
                with self._lock:
                    self.saved.append(key)

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run, args=(n,)) for n in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(90)


def keys_known(cluster: Cluster, keys: list[str]) -> set[str]:
    rows = cluster.query("SELECT object_key FROM pending_uploads WHERE object_key = ANY(%s)", (keys,))
    return {row[0] for row in rows}


def write_artifact(name: str, numbers: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(numbers, indent=2) + "\n")


def retried_by_nginx(cluster: Cluster) -> int:
    """Requests nginx sent to more than one replica (their upstream addresses are a list)."""
    log = cluster.nginx.workdir / "access.log"
    return sum(", " in line for line in log.read_text().splitlines()) if log.exists() else 0


def test_a_rolling_restart_under_load_fails_no_request_and_loses_no_record(cluster: Cluster) -> None:
    retried_before = retried_by_nginx(cluster)
    load = Load(cluster.nginx.base)
    load.start()
    try:
        time.sleep(2)
        for replica in cluster.replicas:
            replica.stop()  # SIGTERM; in-flight requests finish, queued records are written
            replica.start()
            replica.wait_ready()
            time.sleep(1.5)
    finally:
        load.stop()
    issued = list(load.issued)
    # Records are written behind the answers, within LINGER_SECONDS (0.2 s): give the last ones time.
    eventually(lambda: keys_known(cluster, issued) == set(issued), 10)
    known = keys_known(cluster, issued)
    in_tables = cluster.query("SELECT object_key FROM s3_files WHERE object_key = ANY(%s)", (issued,))
    saved_rows = [row[0] for row in in_tables]
    numbers = {
        "requests": load.requests,
        "failed": len(load.failures),
        "keys_issued": len(issued),
        "keys_recorded": len(known),
        "saved": len(load.saved),
        "abandoned": len(load.abandoned),
        "rows": len(saved_rows),
        "retried_by_nginx": retried_by_nginx(cluster) - retried_before,
    }
    write_artifact("rolling-restart.json", numbers)
    assert load.failures == [], (numbers, load.failures[:10])
    assert len(issued) > 50, numbers  # the load ran through the restarts
    # Every key issued is recorded (so the sweep sees an unsaved one), saved ones once each.
    assert known == set(issued), numbers
    assert sorted(saved_rows) == sorted(load.saved), numbers
    assert len(set(saved_rows)) == len(saved_rows)


def test_a_killed_replica_loses_a_bounded_few_records_and_reconcile_finds_them(cluster: Cluster) -> None:
    retried_before = retried_by_nginx(cluster)
    victim = cluster.replicas[0]
    load = Load(cluster.nginx.base)
    load.start()
    try:
        time.sleep(2)
        killed_at = time.monotonic()
        victim.kill()
        time.sleep(2)
        victim.start()
        victim.wait_ready()
        time.sleep(1)
    finally:
        load.stop()
    issued = list(load.issued)
    eventually(lambda: len(keys_known(cluster, issued)) == len(issued), 5)  # the survivors' last batches
    known = keys_known(cluster, issued)
    lost = [key for key in issued if key not in known]
    rows = cluster.query("SELECT object_key FROM s3_files WHERE object_key = ANY(%s)", (issued,))
    saved_rows = {row[0] for row in rows}
    # A save writes its key's record too: only records of keys never saved can stay lost.
    assert not set(lost) & saved_rows
    lost_unsaved = lost
    reconciled = cluster.flask("storage", "reconcile", "s3", "--grace", "0s")
    found = {key for key in lost_unsaved if f"object without row: {key} " in reconciled.stdout}
    numbers = {
        "requests": load.requests,
        "failed": len(load.failures),
        "keys_issued": len(issued),
        "records_lost": len(lost),
        "records_lost_of_unsaved_uploads": len(lost_unsaved),
        "found_by_reconcile": len(found),
        "retried_by_nginx": retried_by_nginx(cluster) - retried_before,
        "issued_in_the_last_second_before_the_kill": sum(
            1 for when in load.issued.values() if killed_at - 1 <= when <= killed_at
        ),
    }
    write_artifact("sigkill.json", numbers)
    # The requests in flight on the killed replica were repeated on another by nginx (presign
    # and save may be: deploy/compose/nginx.conf). Without that rule one or two fail here.
    assert load.failures == [], (numbers, load.failures[:10])
    # Bounded: only what the killed worker had queued (written every LINGER_SECONDS, 0.2 s;
    # 2 s of margin for a loaded machine).
    assert all(killed_at - 2.0 <= load.issued[key] <= killed_at + 0.5 for key in lost), numbers
    # Found again: every lost upload that was never saved is an object reconcile reports.
    assert found == set(lost_unsaved), (numbers, reconciled.stdout[-2000:])

"""Prometheus metrics on METRICS_PORT as the image serves them: summed over workers, off the public port."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from app.metrics import REGISTRY
from devstack.services import free_port, port_is_free
from tests.servers import RedisServer, service_env, start_service, stop_service, wait_service_ready

pytestmark = pytest.mark.integration

PRESIGNS = 6  # the limit below lets 5 through
BODY = b"counted"


@dataclass
class Scraped:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)


def scrape(port: int) -> Scraped:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scraped(samples)


def eventually(check: Callable[[], bool], timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.fixture(params=["granian", "gunicorn"])
def metered(
    request: pytest.FixtureRequest, app_env: dict[str, str], make_database: Callable[[], str], tmp_path: Path
) -> Iterator[tuple[str, int, str]]:
    """A service of two workers with METRICS_PORT; yields its base URL, metrics port and database."""
    port, metrics_port = free_port(), free_port()
    database_url = make_database()
    # The workers count rate limits together (else each would allow its own 5).
    redis = RedisServer(tmp_path / "redis").start()
    env = service_env(
        app_env,
        database_url,
        str(request.param),
        port,
        WEB_CONCURRENCY="2",
        WEB_THREADS="2",
        METRICS_PORT=str(metrics_port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        RATE_LIMIT_PRESIGN=f"{PRESIGNS - 1}/minute",
        RATE_LIMIT_STORAGE_URI=redis.url,
        # The workers' own sweepers look every second; the test expires the abandoned uploads.
        SWEEP_INTERVAL_SECONDS="1",
        SWEEP_GRACE_SECONDS="0",
    )
    log_path = tmp_path / "service.log"
    proc = start_service(env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_service_ready(base, proc, log_path)
        yield base, metrics_port, database_url
    finally:
        stop_service(proc, log_path)
        redis.stop()


def test_a_scrape_after_traffic_shows_what_the_workers_did(metered: tuple[str, int, str]) -> None:
    base, metrics_port, database_url = metered
    before = scrape(metrics_port)
    session = requests.Session()
    statuses = []
    keys = []
    for i in range(PRESIGNS):
        answer = session.post(
            f"{base}/s3/presign-upload",
            json={"fileName": f"m{i}.txt", "contentType": "text/plain", "fileSize": len(BODY)},
            timeout=10,
        )
        statuses.append(answer.status_code)
        if answer.status_code == 200:
            body = answer.json()
            assert requests.put(body["presignedUrl"], data=BODY, headers=body["headers"], timeout=10).ok
            keys.append(body["objectKey"])
    assert statuses == [200] * (PRESIGNS - 1) + [429]
    saved, abandoned = keys[:3], keys[3:]
    for key in saved:
        answer = session.post(f"{base}/s3/save-metadata", json={"objectKey": key}, timeout=10)
        assert answer.status_code == 201
    assert session.get(f"{base}/s3/files", timeout=10).status_code == 200

    # The two unsaved uploads are swept by the workers' own sweepers once, as time would
    # have it, they are old and their URLs have expired (once their records, written
    # behind the answers, are there).
    def recorded() -> bool:
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pending_uploads WHERE object_key = ANY(%s)", (abandoned,))
            (count,) = cur.fetchone()  # type: ignore[misc]
        conn.close()
        return bool(count == len(abandoned))

    assert eventually(recorded, 10)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE pending_uploads SET created_at = now() - interval '1 hour',"
            " expires_at = now() - interval '1 second' WHERE object_key = ANY(%s)",
            (abandoned,),
        )
    conn.close()

    def swept() -> bool:
        series = {"provider": "s3", "result": "swept"}
        now = scrape(metrics_port).value("upload_sweep_uploads_total", **series)
        return now - before.value("upload_sweep_uploads_total", **series) >= len(abandoned)

    assert eventually(swept, 20)
    after = scrape(metrics_port)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT object_key FROM pending_uploads WHERE swept_at IS NOT NULL")
        assert sorted(row[0] for row in cur.fetchall()) == sorted(abandoned)
    conn.close()

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    route = "/s3/presign-upload"
    assert delta("upload_http_requests_total", method="POST", route=route, status="200") == PRESIGNS - 1
    assert delta("upload_http_requests_total", method="POST", route=route, status="429") == 1
    assert delta("upload_http_requests_total", route="/s3/save-metadata", status="201") == len(saved)
    assert delta("upload_http_requests_total", route="/s3/files", status="200") == 1
    assert delta("upload_http_request_duration_seconds_count", method="POST", route=route) == PRESIGNS
    assert delta("upload_rate_limit_refusals_total", scope="presign") == 1
    # save-metadata reads the object's first bytes once per save (a ranged GET).
    assert delta("upload_storage_calls_total", provider="s3", operation="GET", outcome="ok") == len(saved)
    assert delta("upload_storage_call_duration_seconds_count", provider="s3", operation="GET") == len(saved)
    # Every presign record written, none dropped, none waiting; no connection left lent.
    assert delta("upload_presign_records_written_total") == PRESIGNS - 1
    assert delta("upload_presign_records_dropped_total") == 0
    assert after.value("upload_presign_records_queued") == 0
    assert after.value("upload_db_pool_connections_in_use") == 0
    assert delta("upload_db_connections_opened_total", outcome="ok") >= 1
    assert delta("upload_sweep_uploads_total", provider="s3", result="swept") == len(abandoned)
    assert delta("upload_sweep_runs_total", outcome="ok") >= 1


def test_the_public_port_never_answers_metrics(metered: tuple[str, int, str]) -> None:
    base, metrics_port, _ = metered
    public = requests.get(f"{base}/metrics", timeout=5)
    assert public.status_code == 404
    assert "upload_http_requests_total" not in public.text
    assert requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200


@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_a_metrics_port_that_is_the_public_one_is_refused(
    server: str, app_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    log_path = tmp_path / "bad.log"
    env = {**app_env, "SERVER": server, "HOST": "127.0.0.1", "PORT": str(port), "METRICS_PORT": str(port)}
    proc = start_service(env, log_path)
    assert proc.wait(30) != 0
    output = log_path.read_text()
    assert f"METRICS_PORT: must differ from PORT ({port}): the public port never serves metrics" in output
    assert "Traceback" not in output
    assert port_is_free(port)


def test_a_made_up_method_is_counted_as_other_not_as_a_series_of_its_own(
    make_app: Callable[..., Flask],
) -> None:
    client = make_app().test_client()
    labels = {"method": "other", "route": "unmatched", "status": "405"}
    before = REGISTRY.get_sample_value("upload_http_requests_total", labels) or 0
    for method in ("FOO1", "BAR2", "X" * 200):
        assert client.open("/s3/files", method=method).status_code == 405
    assert REGISTRY.get_sample_value("upload_http_requests_total", labels) == before + 3
    names = {s.labels.get("method") for m in REGISTRY.collect() for s in m.samples}
    assert not names & {"FOO1", "BAR2", "X" * 200}

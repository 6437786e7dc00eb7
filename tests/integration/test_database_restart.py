"""A PostgreSQL server this test started is restarted while uploads flow: 503 only meanwhile, nothing lost;
and while the webhook worker runs: it reconnects and sends every event."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from app import create_app
from app.components import get_database
from app.components import settings as app_settings
from app.events.delivery import WebhookDeliverer
from app.migrations import apply_migrations
from devstack.services import NetworkPostgres, free_port
from tests.helpers import put, upload
from tests.servers import PgBouncer, WebhookReceiver

pytestmark = pytest.mark.integration

WORKERS = 4
DOWN_AT, UP_AT, END_AT = 2.0, 5.0, 11.0
RECOVERY_SECONDS = 4.0


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetworkPostgres]:
    server = NetworkPostgres(Path(tmp_path_factory.mktemp("restart-pg")))
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["direct", "through PgBouncer"])
def service_url(
    request: pytest.FixtureRequest, postgres: NetworkPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL the service is given: the server's own, or a transaction pooler's in front of it (Neon's)."""
    if request.param == "direct":
        yield postgres.url()
        return
    # PgBouncer refuses clients for server_login_retry after a failed login (15 s by
    # default): the README says so; here it is 1 s, so the same bound holds.
    pooler = PgBouncer(
        tmp_path_factory.mktemp("restart-pooler"), postgres.trust_url(), server_login_retry=1
    ).start()
    yield pooler.url(postgres.trust_url())
    pooler.stop()


def test_restart_under_load_gives_503_only_while_down_and_loses_nothing(
    postgres: NetworkPostgres, service_url: str, app_env: dict[str, str]
) -> None:
    url = postgres.url()
    apply_migrations(url)
    app = create_app(
        {
            **app_env,
            "DATABASE_URL": service_url,
            "DB_POOL_SIZE": str(WORKERS),
            "DB_CONNECT_TIMEOUT_SECONDS": "1",
        }
    )
    events: list[tuple[float, str, int]] = []
    saved_keys: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()
    stop = threading.Event()

    def call(kind: str, path: str, body: dict[str, Any]) -> Any:
        # A well-behaved client: on 503, wait a little and try again.
        client = app.test_client()
        while True:
            response = client.post(path, json=body)
            with lock:
                events.append((time.monotonic() - started, kind, response.status_code))
            if response.status_code != 503:
                return response
            time.sleep(0.1)

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            presigned = call(
                "presign", "/s3/presign-upload", {"fileName": f"w{n}-{i}.txt", "contentType": "text/plain"}
            )
            assert presigned.status_code == 200, presigned.get_json()
            body = presigned.get_json()
            assert put(body, b"payload").status_code == 200
            saved = call("save", "/s3/save-metadata", {"objectKey": body["objectKey"]})
            assert saved.status_code in (200, 201), saved.get_json()
            with lock:
                saved_keys.append(body["objectKey"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(DOWN_AT)
        down_at = time.monotonic() - started
        postgres.stop(mode="immediate")
        time.sleep(UP_AT - DOWN_AT)
        postgres.start()
        up_at = time.monotonic() - started
        time.sleep(END_AT - UP_AT)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        get_database(app).close()

    statuses = {status for _, _, status in events}
    assert statuses <= {200, 201, 503}, statuses
    unavailable = [t for t, _, status in events if status == 503]
    assert unavailable, "the restart should have been noticed"
    assert min(unavailable) >= down_at - 0.1
    assert max(unavailable) <= up_at + RECOVERY_SECONDS
    assert [s for t, _, s in events if t > up_at + RECOVERY_SECONDS and s != 200 and s != 201] == []
    served_after = [t for t, _, s in events if t > up_at + RECOVERY_SECONDS]
    assert len(served_after) > 20

    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT object_key FROM s3_files")
        in_table = [row[0] for row in cur.fetchall()]
    conn.close()
    # Every upload the clients saw saved is there exactly once; nothing else is.
    assert sorted(in_table) == sorted(saved_keys)


def test_the_webhook_worker_rides_out_a_restart_and_sends_every_event_once(
    postgres: NetworkPostgres, app_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """`flask events deliver` keeps running while the database is down, reconnects, and sends what
    was saved before and after, each event once."""
    url = postgres.url()
    apply_migrations(url)
    receiver = WebhookReceiver(free_port()).start()
    secret = "whsec_" + base64.b64encode(b"a restart secret of thirty-two b").decode()
    app = create_app({**app_env, "DATABASE_URL": url, "WEBHOOK_URLS": receiver.url, "WEBHOOK_SECRET": secret})
    worker = WebhookDeliverer.from_settings(
        app_settings(app), lambda: psycopg2.connect(url, connect_timeout=1)
    )
    stop = threading.Event()
    running = threading.Thread(target=worker.run, args=(stop,))
    running.start()

    def wait_for_events(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(receiver.events()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(receiver.events()) == count

    try:
        client = app.test_client()
        keys = [upload(client, "s3", b"%d" % i, f"before-{i}.txt")["objectKey"] for i in range(3)]
        wait_for_events(3)
        postgres.stop(mode="immediate")
        time.sleep(2.5)  # the worker's polls fail meanwhile
        assert "event delivery failed; retrying" in caplog.text
        postgres.start()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        keys += [upload(client, "s3", b"%d" % i, f"after-{i}.txt")["objectKey"] for i in range(3)]
        wait_for_events(6)
        assert running.is_alive()  # it never gave up
    finally:
        stop.set()
        running.join(30)
        worker.close()
        receiver.stop()
        get_database(app).close()
    events = receiver.events()
    assert sorted(e["data"]["file"]["objectKey"] for e in events) == sorted(keys)
    assert len({e["id"] for e in events}) == 6

"""Through a real PgBouncer in transaction mode (Neon's pooled URL): no session state, nothing leaks.

In transaction pooling each transaction may run on another server
connection, so a session-level ``SET`` would be lost for our next statement
and left behind for another client's. The pool's statements carry their
timeouts with them (``SET LOCAL``, app/db.py's ``bounded_cursor``).
"""

from __future__ import annotations

import base64
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
import requests
from flask import Flask

from app.components import get_provider
from app.components import settings as app_settings
from app.config import ConfigError
from app.db import Database, DatabaseUnavailable
from app.events.delivery import WebhookDeliverer
from app.maintenance.sweep import SweepReport, sweep
from app.migrations import ADVISORY_LOCK_ID, apply_migrations, discover, pending_migrations
from app.repository import MaintenanceRepository
from devstack.services import free_port
from tests.helpers import at_once, presign, put, recorder, upload
from tests.servers import PgBouncer, WebhookReceiver

pytestmark = pytest.mark.integration


def expire_all_urls(direct_url: str) -> None:
    """Move every presign record past its URL's expiry, as time would."""
    with psycopg2.connect(direct_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE pending_uploads SET expires_at = now() - interval '1 second'")
    conn.close()


@pytest.fixture(scope="module")
def pgbouncer(server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    """Debian's PgBouncer in pool_mode=transaction in front of the tests' server."""
    pooler = PgBouncer(tmp_path_factory.mktemp("pgbouncer"), server_dsn).start()
    yield pooler
    pooler.stop()


@pytest.fixture
def direct_url(make_database: Callable[[], str]) -> str:
    """A fresh database with every migration applied, reached directly."""
    url = make_database()
    apply_migrations(url)
    return url


@pytest.fixture
def pooled_url(pgbouncer: PgBouncer, direct_url: str) -> str:
    """The same database through the pooler."""
    return pgbouncer.url(direct_url)


def test_a_statement_past_the_timeout_is_cancelled_through_the_pooler(pooled_url: str) -> None:
    database = Database(pooled_url, size=2, pool_timeout=5, connect_timeout=5, statement_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="database query timed out"):
        database.run(lambda cur: cur.execute("SELECT pg_sleep(3)"))
    assert time.monotonic() - started < 2
    database.close()


def test_the_pools_timeouts_never_stay_on_the_poolers_server_connections(pooled_url: str) -> None:
    database = Database(pooled_url, size=4, pool_timeout=5, connect_timeout=5, statement_timeout_ms=1234)

    def timeout_seen(cur: psycopg2.extensions.cursor) -> str:
        cur.execute("SHOW statement_timeout")
        return str(cur.fetchone()[0])  # type: ignore[index]

    # Each of our statements runs under our timeout...
    assert {database.run(timeout_seen) for _ in range(20)} == {"1234ms"}
    database.close()
    # ...and another client of the same pooler, on the same server connections, sees none of it.
    seen = set()
    for _ in range(20):
        with psycopg2.connect(pooled_url) as other:
            other.autocommit = True
            with other.cursor() as cur:
                cur.execute("SHOW statement_timeout")
                seen.add(cur.fetchone()[0])  # type: ignore[index]
        other.close()
    assert seen == {"0"}


def test_the_upload_flow_and_listing_work_through_the_pooler(
    pooled_url: str, make_app: Callable[..., Flask]
) -> None:
    client = make_app(DATABASE_URL=pooled_url).test_client()
    presigned = client.post(
        "/s3/presign-upload", json={"fileName": "pooled.txt", "contentType": "text/plain"}
    )
    assert presigned.status_code == 200
    body = presigned.get_json()
    put = requests.put(body["presignedUrl"], data=b"through the pooler", headers=body["headers"], timeout=10)
    assert put.status_code == 200
    saved = client.post("/s3/save-metadata", json={"objectKey": body["objectKey"]})
    assert saved.status_code == 201
    listed = client.get("/s3/files")
    assert listed.status_code == 200
    assert [f["objectKey"] for f in listed.get_json()["files"]] == [body["objectKey"]]
    ready = client.get("/readyz")
    assert ready.status_code == 200


def test_sweeps_through_the_pooler_share_the_work_and_never_repeat_it(
    pooled_url: str, direct_url: str, make_app: Callable[..., Flask]
) -> None:
    app = make_app(DATABASE_URL=pooled_url)
    client = app.test_client()
    keys = []
    for i in range(30):
        presigned = presign(client, "s3", f"abandoned-{i}.txt", file_size=1)
        assert put(presigned, b"x").status_code == 200
        keys.append(presigned["objectKey"])
    assert recorder(app).flush()
    expire_all_urls(direct_url)

    with app.app_context():
        providers = {"s3": get_provider("s3")}
    reports: list[SweepReport] = []
    start = threading.Barrier(2)

    def run() -> None:
        conn = psycopg2.connect(pooled_url)  # as `flask storage sweep` connects, through the pooler
        try:
            start.wait()
            reports.append(sweep(MaintenanceRepository(conn), providers, 0, batch_size=4))
        finally:
            conn.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 2
    # Every upload swept exactly once between them (a repeat would count twice).
    assert sum(r.swept["s3"] for r in reports) == len(keys)
    assert all(r.total_failed == 0 for r in reports)
    with app.app_context():
        assert all(get_provider("s3").head(key) is None for key in keys)


def test_reconcile_through_the_pooler_finds_and_fixes_an_orphan(
    pooled_url: str, direct_url: str, make_app: Callable[..., Flask]
) -> None:
    app = make_app(DATABASE_URL=pooled_url, S3_BUCKET_NAME=f"pooled-{uuid.uuid4().hex[:8]}")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["storage", "create-buckets"]).exit_code == 0
    client = app.test_client()
    kept = upload(client, "s3", b"kept")
    orphan = presign(client, "s3", "orphan.txt", file_size=6)
    assert put(orphan, b"orphan").status_code == 200
    assert recorder(app).flush()
    with psycopg2.connect(direct_url) as conn, conn.cursor() as cur:  # as if its presigner had been killed
        cur.execute("DELETE FROM pending_uploads WHERE object_key = %s", (orphan["objectKey"],))
    conn.close()

    # Several pages, each its own transaction: a temporary table would not follow them
    # across the pooler's server connections (4 here, shared with the other tests' clients).
    result = runner.invoke(args=["storage", "reconcile", "s3", "--fix", "--grace", "0s"])
    assert result.exit_code == 0, result.output
    assert f"object without row: {orphan['objectKey']}" in result.output
    with app.app_context():
        assert get_provider("s3").head(orphan["objectKey"]) is None
        assert get_provider("s3").head(kept["objectKey"]) is not None
    with psycopg2.connect(direct_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM reconcile_listings")
        assert cur.fetchone() == (0,)  # the run's copy of the listing is gone with it
        # Nor is any session state left on the pooler's server connections for another client.
        cur.execute("SELECT count(*) FROM pg_class WHERE relpersistence = 't'")
        assert cur.fetchone() == (0,)
    conn.close()


def test_readiness_answers_through_the_pooler(pooled_url: str, make_app: Callable[..., Flask]) -> None:
    ready = make_app(DATABASE_URL=pooled_url).test_client().get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["database"] == "ok"


def advisory_locks_held(direct_url: str) -> int:
    with psycopg2.connect(direct_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (ADVISORY_LOCK_ID,),
        )
        (count,) = cur.fetchone()  # type: ignore[misc]
    conn.close()
    return int(count)


def test_migrations_racing_through_the_pooler_apply_once_and_leave_no_lock(
    pgbouncer: PgBouncer, make_database: Callable[[], str]
) -> None:
    direct = make_database()
    pooled = pgbouncer.url(direct)
    # Three runs at once over four server connections: a statement of one run may land
    # on any of them (a session lock's unlock could miss the connection that holds it).
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        try:
            results.append(apply_migrations(pooled))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, len(discover())]
    assert advisory_locks_held(direct) == 0
    # And a later run is not stuck behind a lock some server connection kept.
    started = time.monotonic()
    assert apply_migrations(pooled) == []
    assert time.monotonic() - started < 5


def test_db_upgrade_runs_on_the_unpooled_url_when_one_is_given(
    pgbouncer: PgBouncer, make_database: Callable[[], str], make_app: Callable[..., Flask]
) -> None:
    direct = make_database()
    # The pooled URL points nowhere: only the direct one can have done the work.
    app = make_app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", DATABASE_URL_UNPOOLED=direct)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert pending_migrations(direct) == []
    status = app.test_cli_runner().invoke(args=["db", "status"])
    assert status.exit_code == 0 and "schema is up to date" in status.output


def test_db_upgrade_through_the_pooler_alone_works(
    pgbouncer: PgBouncer, make_database: Callable[[], str], make_app: Callable[..., Flask]
) -> None:
    direct = make_database()
    app = make_app(DATABASE_URL=pgbouncer.url(direct), DATABASE_URL_UNPOOLED=None)
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert pending_migrations(direct) == []
    assert advisory_locks_held(direct) == 0


def test_a_malformed_unpooled_url_is_refused_at_start_up(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL_UNPOOLED: not a valid PostgreSQL connection URL"):
        make_app(DATABASE_URL_UNPOOLED="postgresql://x@h/db?nonsense=1")


def test_quotas_hold_through_the_pooler_across_replicas(
    pooled_url: str, make_app: Callable[..., Flask]
) -> None:
    """A presign or save takes its user's lock for its transaction alone: through the pooler, 24
    presigns at once from two replicas against a limit of 5 pass 5, and their saves at once against
    a byte limit lowered meanwhile store exactly what fits."""
    limits = {"QUOTA_UNSAVED_UPLOADS_PER_USER": "5", "QUOTA_BYTES_PER_USER": "1000"}
    replicas = [make_app(DATABASE_URL=pooled_url, **limits) for _ in range(2)]

    def presign_one(n: int) -> Any:
        return (
            replicas[n % 2]
            .test_client()
            .post(
                "/s3/presign-upload",
                json={"fileName": f"q{n}.txt", "contentType": "text/plain", "fileSize": 100},
                headers={"X-User-Id": "quinn"},
            )
        )

    presigned = at_once([functools.partial(presign_one, n) for n in range(24)])
    assert sorted(a.status_code for a in presigned) == [200] * 5 + [403] * 19
    usage = replicas[0].test_client().get("/usage", headers={"X-User-Id": "quinn"}).get_json()
    assert usage["usage"] == {"bytes": 0, "files": 0, "unsavedBytes": 500, "unsavedUploads": 5}

    keys = []
    for answer in presigned:
        if answer.status_code == 200:
            body = answer.get_json()
            assert requests.put(body["presignedUrl"], data=b"q" * 100, headers=body["headers"], timeout=10).ok
            keys.append(body["objectKey"])
    lowered = replicas[1].test_cli_runner().invoke(args=["quota", "set", "quinn", "--bytes", "350"])
    assert lowered.exit_code == 0, lowered.output

    def save_one(n: int) -> Any:
        return (
            replicas[n % 2]
            .test_client()
            .post("/s3/save-metadata", json={"objectKey": keys[n]}, headers={"X-User-Id": "quinn"})
        )

    saved = at_once([functools.partial(save_one, n) for n in range(5)])
    assert sorted(a.status_code for a in saved) == [201] * 3 + [413] * 2
    usage = replicas[1].test_client().get("/usage", headers={"X-User-Id": "quinn"}).get_json()
    assert usage["usage"] == {"bytes": 300, "files": 3, "unsavedBytes": 0, "unsavedUploads": 0}
    recount = replicas[0].test_cli_runner().invoke(args=["quota", "recount"])
    assert recount.exit_code == 0, recount.output
    assert "0 user(s) corrected" in recount.output  # what the saves counted is what the tables hold


def test_events_through_the_pooler_are_delivered_once_by_two_workers(
    pooled_url: str, direct_url: str, make_app: Callable[..., Flask]
) -> None:
    """The outbox's claim, hold and finish are a transaction each: through the pooler two workers
    share the events and send each once."""
    receiver = WebhookReceiver(free_port()).start()
    try:
        secret = "whsec_" + base64.b64encode(b"a pooled secret of thirty-two by").decode()
        app = make_app(DATABASE_URL=pooled_url, WEBHOOK_URLS=receiver.url, WEBHOOK_SECRET=secret)
        client = app.test_client()
        keys = [upload(client, "s3", b"%d" % i, f"pooled-{i}.txt")["objectKey"] for i in range(12)]
        settings = app_settings(app)
        workers = [
            WebhookDeliverer.from_settings(settings, lambda: psycopg2.connect(pooled_url), batch_size=2)
            for _ in range(2)
        ]
        at_once([functools.partial(worker.run, threading.Event(), once=True) for worker in workers])
        for worker in workers:
            worker.close()
        events = receiver.events()
    finally:
        receiver.stop()
    assert sorted(e["data"]["file"]["objectKey"] for e in events) == sorted(keys)  # each once
    with psycopg2.connect(direct_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM events GROUP BY state")
        assert cur.fetchall() == [("delivered", 12)]
    conn.close()

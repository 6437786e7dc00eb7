"""Webhooks from the outbox, to a real HTTP receiver: signed, retried, in order, once per worker pool."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from flask import Flask
from standardwebhooks import Webhook

from app.components import settings as app_settings
from app.events import delivery
from app.events.delivery import WebhookDeliverer, receiver_id
from app.metrics import REGISTRY
from app.migrations import apply_migrations
from app.repository.events import EventRepository
from devstack.services import ROOT, free_port
from tests.helpers import at_once, presign, put, recorder, save, upload
from tests.servers import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two bytes").decode()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    server = WebhookReceiver(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def events_db(make_database: Callable[[], str]) -> str:
    """A database of its own: each test sees only its own events."""
    url = make_database()
    apply_migrations(url)
    return url


@pytest.fixture
def events_app(
    make_app: Callable[..., Flask], events_db: str, receiver: WebhookReceiver
) -> Callable[..., Flask]:
    def make(**more: str) -> Flask:
        env = {
            "DATABASE_URL": events_db,
            "WEBHOOK_URLS": receiver.url,
            "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_RETRY_BASE_SECONDS": "0.05",
            "WEBHOOK_MAX_ATTEMPTS": "4",
            "WEBHOOK_TIMEOUT_SECONDS": "1",
            **more,
        }
        return make_app(**env)

    return make


def deliverer(app: Flask, batch_size: int = 50) -> WebhookDeliverer:
    s = app_settings(app)
    return WebhookDeliverer.from_settings(s, lambda: psycopg2.connect(s.database_url), batch_size)


def deliver_until_settled(app: Flask, timeout: float = 20) -> None:
    """Run `flask events deliver --once` until no event is pending."""
    runner = app.test_cli_runner()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = runner.invoke(args=["events", "deliver", "--once"])
        assert result.exit_code == 0, result.output
        if not states(app_settings(app).database_url).get("pending"):
            return
        time.sleep(0.1)
    raise AssertionError(f"events still pending: {states(app_settings(app).database_url)}")


def start_worker(app: Flask, **more: str) -> subprocess.Popen[bytes]:
    """Start `flask events deliver` as its own process, with ``app``'s database and receivers."""
    s = app_settings(app)
    env = {
        **os.environ,
        "DATABASE_URL": s.database_url,
        "WEBHOOK_URLS": ",".join(s.webhook_urls),
        "WEBHOOK_SECRET": SECRET,
        "AUTH_MODE": "dev",
        "APP_ENV": "test",
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        **more,
    }
    return subprocess.Popen(
        ["flask", "--app", "app", "events", "deliver"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def states(database_url: str) -> dict[str, int]:
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, count(*) FROM events GROUP BY state")
        found = dict(cur.fetchall())
    conn.close()
    return found


def without_download_url(file: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in file.items() if k != "downloadUrl"}


def test_saved_and_deleted_files_arrive_signed_in_order_with_the_files_json(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app()
    client = app.test_client()
    saved = upload(client, "s3", b"an event", "event.txt", user="alice")
    assert client.delete(f"/s3/files/{saved['id']}", headers={"X-User-Id": "alice"}).status_code == 204
    azure = upload(client, "azure", b"blob", "blob.txt", user="alice")
    deliver_until_settled(app)

    # In order per file (an event waits for the earlier ones of its file), not across files.
    events = sorted(receiver.events(), key=lambda e: (e["data"]["provider"] != "s3", e["timestamp"]))
    assert [(e["type"], e["data"]["provider"]) for e in events] == [
        ("file.saved", "s3"),
        ("file.deleted", "s3"),
        ("file.saved", "azure"),
    ]
    s3_order = [e["type"] for e in receiver.events() if e["data"]["provider"] == "s3"]
    assert s3_order == ["file.saved", "file.deleted"]
    for headers, body in receiver.received:
        # The documented secret verifies it, with the Standard Webhooks library...
        payload = Webhook(SECRET).verify(body, headers)
        assert payload["id"] == headers["webhook-id"]
        # ...and by hand: HMAC-SHA256 over "id.timestamp.body" with the secret's bytes.
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == expected
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert events[0]["data"]["userId"] == "alice"
    assert events[0]["data"]["file"] == without_download_url(saved)
    assert events[1]["data"]["file"] == without_download_url(saved)
    assert events[2]["data"]["file"] == without_download_url(azure)
    assert events[2]["data"]["file"]["blobName"] == azure["objectKey"]
    assert len({e["id"] for e in events}) == 3
    assert states(app_settings(app).database_url) == {"delivered": 3}


def test_a_refused_upload_and_a_swept_one_send_their_events(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app()
    client = app.test_client()
    page = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
    refused = presign(client, "s3", "note.txt", "text/plain", file_size=len(page), user="bob")
    assert put(refused, page).status_code == 200
    answer = save(client, "s3", refused["objectKey"], user="bob")
    assert answer.status_code == 415
    abandoned = presign(client, "s3", "never.txt", "text/plain", file_size=1, user="bob")
    assert put(abandoned, b"x").status_code == 200
    assert recorder(app).flush()
    with psycopg2.connect(app_settings(app).database_url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE pending_uploads SET expires_at = now() - interval '1 second'")
    conn.close()
    assert app.test_cli_runner().invoke(args=["storage", "sweep", "--older-than", "0s"]).exit_code == 0
    deliver_until_settled(app)

    # Swept again later, the refused key is not announced again.
    assert app.test_cli_runner().invoke(args=["storage", "sweep", "--older-than", "0s"]).exit_code == 0
    deliver_until_settled(app)
    by_type = {e["type"]: e for e in receiver.events()}
    assert len(receiver.events()) == 2
    assert set(by_type) == {"upload.rejected", "upload.swept"}
    rejected = by_type["upload.rejected"]["data"]
    assert rejected["status"] == 415
    assert rejected["reason"] == answer.get_json()["error"]
    assert rejected["upload"]["objectKey"] == refused["objectKey"]
    assert rejected["userId"] == "bob"
    swept = by_type["upload.swept"]["data"]
    assert swept["upload"] == {
        "provider": "s3",
        "objectKey": abandoned["objectKey"],
        "fileName": "never.txt",
        "contentType": "text/plain",
        "declaredSize": 1,
    }


def test_a_save_that_fails_at_the_database_writes_no_event(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app(DB_STATEMENT_TIMEOUT_MS="300")
    client = app.test_client()
    presigned = presign(client, "s3", "late.txt", file_size=4, user="carol")
    assert put(presigned, b"late").status_code == 200
    blocker = psycopg2.connect(app_settings(app).database_url)
    try:
        with blocker.cursor() as cur:
            # The save's own statement waits on the outbox, past its timeout, and is cancelled.
            cur.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
        assert save(client, "s3", presigned["objectKey"], user="carol").status_code == 503
    finally:
        blocker.rollback()
        blocker.close()
    database_url = app_settings(app).database_url
    assert states(database_url) == {}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM s3_files")
        assert cur.fetchone() == (0,)  # the row went with the event: neither committed
    conn.close()
    assert save(client, "s3", presigned["objectKey"], user="carol").status_code == 201
    assert save(client, "s3", presigned["objectKey"], user="carol").status_code == 200
    deliver_until_settled(app)
    assert [e["type"] for e in receiver.events()] == ["file.saved"]  # once, for the save that landed


def test_a_receiver_answering_500_or_too_slowly_gets_retries_and_then_the_event(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    receiver.fail_first = 2  # then a third attempt that stalls past the timeout, then 200
    receiver.stall_first = 3
    receiver.stall_seconds = 1.5
    app = events_app()
    upload(app.test_client(), "r2", b"retried", "retried.txt")
    deliver_until_settled(app, timeout=30)
    assert receiver.answers[:2] == [500, 500]
    assert len(receiver.answers) == 4
    events = receiver.events()
    # The stalled attempt was answered 200 after the sender gave up: both arrived, same id.
    assert {e["id"] for e in events} == {events[0]["id"]} and events[0]["type"] == "file.saved"
    with psycopg2.connect(app_settings(app).database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT state, attempts FROM events")
        assert cur.fetchall() == [("delivered", 4)]
    conn.close()


def test_after_the_last_attempt_an_event_is_dead_until_replayed(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    receiver.fail_first = 4
    app = events_app()
    upload(app.test_client(), "b2", b"dead", "dead.txt")
    runner = app.test_cli_runner()
    deadline = time.monotonic() + 20
    while states(app_settings(app).database_url) != {"dead": 1} and time.monotonic() < deadline:
        assert runner.invoke(args=["events", "deliver", "--once"]).exit_code == 0
        time.sleep(0.1)
    assert states(app_settings(app).database_url) == {"dead": 1}
    assert receiver.answers == [500] * 4
    listed = runner.invoke(args=["events", "list"])
    assert "file.saved" in listed.output and "dead" in listed.output and "HTTP 500" in listed.output
    assert "receiver-secret" not in listed.output  # the receiver's URL (and its token) never shows

    replayed = runner.invoke(args=["events", "replay", "--all-dead"])
    assert "1 event(s) queued again" in replayed.output
    deliver_until_settled(app)
    assert [e["type"] for e in receiver.events()] == ["file.saved"]
    unknown = runner.invoke(args=["events", "replay", "00000000-0000-0000-0000-000000000000"])
    assert unknown.exit_code == 1
    assert "no such event: 00000000-0000-0000-0000-000000000000" in unknown.output
    nothing = runner.invoke(args=["events", "replay"])
    assert nothing.exit_code == 1
    assert "name the events to replay (their ids), or pass --all-dead" in nothing.output


def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_back(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    receiver.stop()
    app = events_app(WEBHOOK_MAX_ATTEMPTS="20")
    client = app.test_client()
    keys = [upload(client, "s3", b"%d" % i, f"down-{i}.txt")["objectKey"] for i in range(5)]
    runner = app.test_cli_runner()
    for _ in range(3):  # refused connections, retried later
        assert runner.invoke(args=["events", "deliver", "--once"]).exit_code == 0
        time.sleep(0.1)
    assert states(app_settings(app).database_url) == {"pending": 5}
    back = WebhookReceiver(receiver.port).start()
    try:
        deliver_until_settled(app, timeout=30)
        got = [e["data"]["file"]["objectKey"] for e in back.events()]
    finally:
        back.stop()
    assert sorted(got) == sorted(keys)  # each once (files' events have no order between them)


def test_two_workers_share_the_events_and_send_each_once_in_order_per_file(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    receiver.delay_seconds = 0.01
    app = events_app()
    client = app.test_client()
    for i in range(15):
        saved = upload(client, "s3", b"%d" % i, f"pair-{i}.txt", user="dana")
        assert client.delete(f"/s3/files/{saved['id']}", headers={"X-User-Id": "dana"}).status_code == 204
    workers = [deliverer(app, batch_size=3), deliverer(app, batch_size=3)]
    reports = at_once([functools.partial(worker.run, threading.Event(), once=True) for worker in workers])
    for worker in workers:
        worker.close()
    deliver_until_settled(app)
    events = receiver.events()
    assert len(events) == 30 and len({e["id"] for e in events}) == 30  # each once
    assert sum(r.delivered for r in reports) <= 30
    order: dict[str, list[str]] = {}
    for event in events:
        order.setdefault(event["data"]["file"]["objectKey"], []).append(event["type"])
    assert all(types == ["file.saved", "file.deleted"] for types in order.values())


def test_delivered_events_are_pruned_after_the_retention_period(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app(EVENTS_RETENTION_DAYS="0")
    upload(app.test_client(), "s3", b"pruned", "pruned.txt")
    deliver_until_settled(app)
    assert len(receiver.events()) == 1
    assert deliverer(app).prune() == 1
    assert states(app_settings(app).database_url) == {}


def test_without_receivers_no_event_is_written_and_the_worker_refuses_to_start(
    make_app: Callable[..., Flask], events_db: str
) -> None:
    app = make_app(DATABASE_URL=events_db)
    upload(app.test_client(), "s3", b"quiet", "quiet.txt")
    assert states(events_db) == {}
    result = app.test_cli_runner().invoke(args=["events", "deliver", "--once"])
    assert result.exit_code == 1
    assert "no receivers: set WEBHOOK_URLS and WEBHOOK_SECRET" in result.output


def test_the_worker_stops_on_sigterm(events_app: Callable[..., Flask]) -> None:
    """`flask events deliver` runs until stopped, and a SIGTERM stops it cleanly."""
    app = events_app()
    s = app_settings(app)
    proc = start_worker(app)
    try:
        upload(app.test_client(), "s3", b"live", "live.txt")
        deadline = time.monotonic() + 15
        while states(s.database_url) != {"delivered": 1} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states(s.database_url) == {"delivered": 1}  # the running worker found it
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"1 delivered, 0 to retry, 0 dead" in output


def test_the_outbox_names_receivers_by_digest_never_by_url(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app()
    upload(app.test_client(), "s3", b"secretive", "secretive.txt")
    deliver_until_settled(app)
    with psycopg2.connect(app_settings(app).database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT delivered_to, coalesce(last_error, '') FROM events")
        rows = cur.fetchall()
    conn.close()
    assert rows == [([receiver_id(receiver.url)], "")]
    assert "receiver-secret" not in repr(rows)


def test_a_worker_whose_hold_ran_out_neither_sends_nor_records_the_event(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app()
    upload(app.test_client(), "s3", b"held", "held.txt")
    database_url = app_settings(app).database_url
    slow, fast = psycopg2.connect(database_url), psycopg2.connect(database_url)
    try:
        slow_repo, fast_repo = EventRepository(slow), EventRepository(fast)
        (taken,) = slow_repo.claim_due("00000000-0000-0000-0000-00000000000a", 10, 0.05)
        assert fast_repo.claim_due("00000000-0000-0000-0000-00000000000b", 10, 30) == []  # held
        time.sleep(0.2)  # the slow worker's hold runs out...
        (again,) = fast_repo.claim_due("00000000-0000-0000-0000-00000000000b", 10, 30)  # ...another takes it
        assert again.seq == taken.seq
        # The slow worker may not send it now, nor record an attempt for it.
        assert not slow_repo.hold("00000000-0000-0000-0000-00000000000a", taken.seq, 30)
        recorded = slow_repo.finish_attempt(
            "00000000-0000-0000-0000-00000000000a",
            taken.seq,
            delivered_to=["x"],
            done=True,
            error=None,
            retry_in=0,
            max_attempts=4,
        )
        assert recorded == "lost"
        assert fast_repo.hold("00000000-0000-0000-0000-00000000000b", again.seq, 30)
    finally:
        slow.close()
        fast.close()
    assert states(database_url) == {"pending": 1}


def test_a_save_refused_by_a_quota_is_announced_with_its_status(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    app = events_app(QUOTA_BYTES_PER_USER="10000")
    client = app.test_client()
    keys = []
    for i in range(2):
        presigned = presign(client, "s3", f"q{i}.txt", "text/plain", file_size=100, user="quinn")
        assert put(presigned, b"q" * 100).status_code == 200
        keys.append(presigned["objectKey"])
    assert app.test_cli_runner().invoke(args=["quota", "set", "quinn", "--bytes", "150"]).exit_code == 0
    assert save(client, "s3", keys[0], user="quinn").status_code == 201
    refused = save(client, "s3", keys[1], user="quinn")
    assert refused.status_code == 413
    deliver_until_settled(app)
    events = {e["type"]: e["data"] for e in receiver.events()}
    assert set(events) == {"file.saved", "upload.rejected"}
    assert events["upload.rejected"]["status"] == 413
    assert events["upload.rejected"]["reason"] == refused.get_json()["error"]
    assert events["upload.rejected"]["upload"]["objectKey"] == keys[1]


def metric(name: str, **labels: str) -> float:
    """A sample's value in this process's registry (0 when it has none yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_receiver_is_reached_through_the_proxy_the_environment_names(
    events_app: Callable[..., Flask],
    receiver: WebhookReceiver,
    tinyproxy: tuple[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, log = tinyproxy
    app = events_app()
    upload(app.test_client(), "s3", b"proxied", "proxied.txt")
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", url)  # read when the worker starts, as the storage clients do
    deliver_until_settled(app)
    assert [e["type"] for e in receiver.events()] == ["file.saved"]
    assert f"127.0.0.1:{receiver.port}/hooks" in log.read_text()

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    upload(app.test_client(), "s3", b"direct", "direct.txt")
    before = log.read_text().count(f"127.0.0.1:{receiver.port}/hooks")
    deliver_until_settled(app)
    assert [e["type"] for e in receiver.events()] == ["file.saved", "file.saved"]
    assert log.read_text().count(f"127.0.0.1:{receiver.port}/hooks") == before


def test_the_worker_refuses_a_proxy_reached_over_https(
    events_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = events_app()
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example.com:3129")
    result = app.test_cli_runner().invoke(args=["events", "deliver", "--once"])
    assert result.exit_code == 1
    assert "HTTP_PROXY: only an http:// proxy is supported for webhooks" in result.output


@pytest.mark.parametrize("answer", ["huge", "endless", "trickle", "bad-gzip"])
def test_only_the_status_of_a_2xx_counts_whatever_its_body(
    events_app: Callable[..., Flask], receiver: WebhookReceiver, answer: str
) -> None:
    """A body over 64 KiB, one still coming after the timeout (1 s here) or one that is not what it
    says is left (the connection closed), and the event is delivered; the next one goes too."""
    receiver.answer = answer
    app = events_app()
    client = app.test_client()
    upload(client, "s3", b"one", "one.txt")
    upload(client, "s3", b"two", "two.txt")
    deliver_until_settled(app)  # 20 s; a stream would hold a worker that waited for its end 60 s
    assert [e["type"] for e in receiver.events()] == ["file.saved", "file.saved"]
    assert states(app_settings(app).database_url) == {"delivered": 2}
    assert {headers["user-agent"] for headers, _ in receiver.received} == {"upload-service-webhooks/1"}


def test_the_workers_metrics_count_each_receivers_answers_and_the_outbox(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    refusing = WebhookReceiver(free_port(), fail_first=100).start()
    slow = WebhookReceiver(free_port(), stall_first=100, stall_seconds=1.5).start()
    gone = WebhookReceiver(free_port())  # never started: its connection is refused
    try:
        urls = ",".join([receiver.url, refusing.url, slow.url, gone.url])
        app = events_app(WEBHOOK_URLS=urls, WEBHOOK_MAX_ATTEMPTS="2")
        labels = [("1", "delivered"), ("2", "refused"), ("3", "timeout"), ("4", "error")]
        before = {pair: metric("upload_webhook_requests_total", receiver=pair[0], outcome=pair[1])
                  for pair in labels}  # fmt: skip
        attempts = {r: metric("upload_event_attempts_total", result=r) for r in ("retry", "dead")}
        upload(app.test_client(), "s3", b"counted", "counted.txt")
        worker = deliverer(app)
        try:
            worker.report_outbox()
            assert metric("upload_events_outbox", state="pending") == 1
            assert metric("upload_events_outbox", state="dead") == 0
            deadline = time.monotonic() + 30
            while states(app_settings(app).database_url) != {"dead": 1} and time.monotonic() < deadline:
                worker.deliver_due()
                time.sleep(0.1)
            worker.report_outbox()
        finally:
            worker.close()
    finally:
        refusing.stop()
        slow.stop()
    assert states(app_settings(app).database_url) == {"dead": 1}
    after = {pair: metric("upload_webhook_requests_total", receiver=pair[0], outcome=pair[1])
             for pair in labels}  # fmt: skip
    # The first receiver had it at the first attempt, and is not sent it again.
    assert {pair: after[pair] - before[pair] for pair in labels} == {pair: (1 if pair[0] == "1" else 2)
                                                                      for pair in labels}  # fmt: skip
    assert metric("upload_event_attempts_total", result="retry") - attempts["retry"] == 1
    assert metric("upload_event_attempts_total", result="dead") - attempts["dead"] == 1
    assert metric("upload_events_outbox", state="pending") == 0
    assert metric("upload_events_outbox", state="dead") == 1
    assert metric("upload_webhook_request_duration_seconds_count", receiver="3") >= 2


def test_the_worker_serves_its_metrics_on_events_metrics_port(
    events_app: Callable[..., Flask], receiver: WebhookReceiver
) -> None:
    """A running `flask events deliver` answers /metrics on EVENTS_METRICS_PORT, after traffic."""
    app = events_app()
    s = app_settings(app)
    upload(app.test_client(), "s3", b"scraped", "scraped.txt")  # pending when the worker starts
    port = free_port()
    proc = start_worker(app, EVENTS_METRICS_PORT=str(port), HOST="127.0.0.1")
    try:
        deadline = time.monotonic() + 15
        while states(s.database_url) != {"delivered": 1} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states(s.database_url) == {"delivered": 1}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            scraped = answer.read().decode()
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 'upload_webhook_requests_total{outcome="delivered",receiver="1"} 1.0' in scraped
    assert 'upload_event_attempts_total{result="delivered"} 1.0' in scraped
    assert 'upload_events_outbox{state="pending"} 1.0' in scraped  # read as it started
    assert 'upload_events_oldest_due_seconds{state="pending"}' in scraped
    assert "receiver-secret" not in scraped
    assert proc.returncode == 0


def test_the_worker_says_when_its_metrics_port_is_taken(events_app: Callable[..., Flask]) -> None:
    app = events_app()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = app.test_cli_runner().invoke(
            args=["events", "deliver", "--once", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        )
    assert result.exit_code == 1
    assert f"cannot serve metrics on EVENTS_METRICS_PORT {port}: Address already in use" in result.output


def test_the_worker_refuses_a_metrics_port_that_is_no_port(events_app: Callable[..., Flask]) -> None:
    runner = events_app().test_cli_runner()
    for value in ("abc", "0", "70000", "²"):
        result = runner.invoke(args=["events", "deliver", "--once"], env={"EVENTS_METRICS_PORT": value})
        assert result.exit_code == 2
        assert (
            "Invalid value for '--metrics-port': expected a port from 1 to 65535 "
            f"(EVENTS_METRICS_PORT or --metrics-port), not '{value}'"
        ) in result.output


def test_a_worker_holds_an_event_again_only_when_its_batchs_lease_might_not_outlast_the_send(
    events_app: Callable[..., Flask], receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    holds: list[int] = []
    real_hold = EventRepository.hold

    def counted_hold(self: EventRepository, worker: str, seq: int, lease_seconds: float) -> bool:
        holds.append(seq)
        return real_hold(self, worker, seq, lease_seconds)

    monkeypatch.setattr(EventRepository, "hold", counted_hold)
    app = events_app()
    client = app.test_client()
    for i in range(3):
        upload(client, "s3", b"%d" % i, f"trusted-{i}.txt")
    worker = deliverer(app)
    try:
        assert worker.deliver_due().delivered == 3
        assert holds == []  # a fresh batch's lease outlasts every send: no round trip for nothing
        monkeypatch.setattr(delivery, "HOLD_MARGIN_SECONDS", float("inf"))  # as late in a batch
        for i in range(3):
            upload(client, "s3", b"%d" % i, f"renewed-{i}.txt")
        assert worker.deliver_due().delivered == 3
        assert len(holds) == 3
    finally:
        worker.close()
    assert len(receiver.events()) == 6


def test_late_in_its_batch_a_worker_skips_an_event_another_took_when_its_lease_ran_out(
    events_app: Callable[..., Flask], receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = events_app()
    upload(app.test_client(), "s3", b"taken", "taken.txt")
    database_url = app_settings(app).database_url
    real_claim = EventRepository.claim_due
    other = psycopg2.connect(database_url)

    def claim_then_lose_it(self: EventRepository, worker: str, limit: int, lease: float) -> list[Any]:
        batch = real_claim(self, worker, limit, lease)
        with other, other.cursor() as cur:  # the lease runs out (time passes) and another worker claims
            cur.execute("UPDATE events SET locked_until = now() - interval '1 second'")
        assert len(real_claim(EventRepository(other), str(uuid.uuid4()), 10, 60)) == 1
        return batch

    monkeypatch.setattr(EventRepository, "claim_due", claim_then_lose_it)
    monkeypatch.setattr(delivery, "HOLD_MARGIN_SECONDS", float("inf"))  # late in the batch: it holds first
    worker = deliverer(app)
    try:
        report = worker.deliver_due()
    finally:
        worker.close()
        other.close()
    assert report.handled == 0 and receiver.events() == []  # theirs to send, not this worker's


def test_replaying_an_event_a_worker_holds_leaves_it_held(events_app: Callable[..., Flask]) -> None:
    app = events_app()
    upload(app.test_client(), "s3", b"held", "held-replay.txt")
    database_url = app_settings(app).database_url
    first, second = psycopg2.connect(database_url), psycopg2.connect(database_url)
    try:
        (held,) = EventRepository(first).claim_due(str(uuid.uuid4()), 10, 60)
        assert EventRepository(second).replay([held.id]) == [held.id]
        # Still held by the worker that may be sending it: no other worker can take it meanwhile.
        assert EventRepository(second).claim_due(str(uuid.uuid4()), 10, 60) == []
    finally:
        first.close()
        second.close()

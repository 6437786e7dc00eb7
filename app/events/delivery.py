"""Deliver the outbox's events to WEBHOOK_URLS, signed the Standard Webhooks way, at least once.

``flask events deliver`` runs one ``WebhookDeliverer``; several may run at
once (replicas, a worker per host): each claims its own batch in PostgreSQL
and holds each event for a lease (``repository/events.py``), renewed right
before the event is sent once what is left of the batch's lease might not
outlast the send (until then the renewal is a round trip for nothing): no
event is sent by two workers at the same time (a worker whose lease ran out
finds the event taken and skips it, and can no longer record an attempt for
it), and a worker that dies lets its batch go when the lease ends. On
SIGTERM the worker finishes the event in hand and lets the rest of its batch
go.

For each event, every receiver that has not had it yet is sent one POST:
the JSON body of ``payloads.event_body`` with ``webhook-id`` (the event's id,
the same on every attempt: receivers drop duplicates by it),
``webhook-timestamp`` (this attempt's time) and ``webhook-signature``
(``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` under the
secret), made by the ``standardwebhooks`` library. A 2xx answer is
delivered; anything else, a timeout or a refused connection is tried again
after ``retry_base x 4^(attempt - 1)`` seconds (capped at 6 hours, with up
to 25% more at random so that retries spread), up to ``max_attempts``; then
the event is dead until an operator replays it.

At least once: a worker that dies after a receiver answered and before the
answer is recorded sends that event again after its lease. In order per
file: an event waits while an earlier one of the same file is pending.

The worker polls (every second when idle): LISTEN/NOTIFY would not reach it
through a transaction pooler (Neon's pooled URL).

A receiver is reached through the proxy the environment names for it
(``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY`` names its host), as the
storage calls are. Its answer's body is read up to 64 KiB and dropped: only
the status counts, and a receiver cannot fill the worker's memory or hold it with
a body that never ends (``_drain``).
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import urllib3
from psycopg2.extensions import connection as Connection
from standardwebhooks import Webhook

from ..config import Settings
from ..metrics import (
    EVENT_ATTEMPTS,
    EVENTS_OLDEST_DUE_SECONDS,
    EVENTS_OUTBOX,
    WEBHOOK_REQUEST_SECONDS,
    WEBHOOK_REQUESTS,
)
from ..proxies import Proxy, proxy_for
from ..repository.events import EventRepository, OutboxEvent
from .payloads import event_body

log = logging.getLogger(__name__)

BATCH_SIZE = 50
MAX_RETRY_SECONDS = 6 * 3600
IDLE_POLL_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 60.0
STATS_EVERY_SECONDS = 15.0
#: an event is held again before it is sent unless its batch's lease outlasts the send by this
HOLD_MARGIN_SECONDS = 5.0
#: what is read of a receiver's answer (and dropped); a longer one closes its connection
MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "upload-service-webhooks/1"


def receiver_id(url: str) -> str:
    """How the outbox names a receiver that has an event: a digest, never the URL (it may carry a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def retry_delay(attempt: int, base: float, jitter: float = 0.25) -> float:
    """Seconds before attempt ``attempt + 1``, after ``attempt`` failed ones (1-based)."""
    delay = min(float(MAX_RETRY_SECONDS), base * 4.0 ** (attempt - 1))
    return delay * (1 + random.uniform(0, jitter))  # noqa: S311 - spread, not secrecy


@dataclass
class DeliveryReport:
    """What one pass over the due events did."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        """Events attempted."""
        return self.delivered + self.retried + self.dead


class WebhookDeliverer:
    """Claims due events, POSTs each to the receivers that lack it, records what happened."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        urls: Sequence[str],
        secret: str,
        *,
        max_attempts: int,
        retry_base_seconds: float,
        timeout_seconds: float,
        retention_days: float,
        batch_size: int = BATCH_SIZE,
    ):
        self._connect = connect
        self._batch_size = batch_size
        self._urls = tuple(urls)
        self._ids = {url: receiver_id(url) for url in self._urls}
        self._signer = Webhook(secret)
        self._max_attempts = max_attempts
        self._retry_base = retry_base_seconds
        self._timeout = timeout_seconds
        self._retention_seconds = retention_days * 86_400
        # Long enough for one POST to every receiver, each connecting, waiting for its answer
        # and for its body (``_drain``: the timeout plus one last read) as long as it may, and
        # the bookkeeping: held again right before each event is sent.
        self._send_seconds = (min(5.0, timeout_seconds) + 3 * timeout_seconds) * len(self._urls)
        self._lease = self._send_seconds + 30
        self._worker = str(uuid.uuid4())
        self._http = self._pools(self._urls, min(5.0, timeout_seconds), timeout_seconds)
        # Receivers by place (1, 2, ...) in WEBHOOK_URLS: how logs and metrics name them.
        self._places = {url: str(place) for place, url in enumerate(self._urls, start=1)}
        self._conn: Connection | None = None

    @staticmethod
    def _pools(urls: Sequence[str], connect: float, read: float) -> dict[str, urllib3.PoolManager]:
        """A connection pool for each receiver: through the proxy the environment names for it, or direct.

        Raises ``UnusableProxy`` (a ValueError naming the variable) for a proxy reached over https.
        """
        timeout = urllib3.Timeout(connect=connect, read=read)
        direct = urllib3.PoolManager(timeout=timeout, retries=False)
        proxied: dict[Proxy, urllib3.ProxyManager] = {}
        pools: dict[str, urllib3.PoolManager] = {}
        for url in urls:
            parts = urllib3.util.parse_url(url)
            proxy = proxy_for(parts.scheme or "http", parts.host or "", purpose="webhooks")
            if proxy is None:
                pools[url] = direct
                continue
            if proxy not in proxied:
                auth = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
                proxied[proxy] = urllib3.ProxyManager(
                    proxy.url, proxy_headers=auth, timeout=timeout, retries=False
                )
            pools[url] = proxied[proxy]
        return pools

    @classmethod
    def from_settings(
        cls, settings: Settings, connect: Callable[[], Connection], batch_size: int = BATCH_SIZE
    ) -> WebhookDeliverer:
        """A worker for the receivers, secret and schedule ``settings`` name (WEBHOOK_*)."""
        if not settings.webhook_urls or settings.webhook_secret is None:
            raise ValueError("no receivers: set WEBHOOK_URLS and WEBHOOK_SECRET")
        return cls(
            connect,
            settings.webhook_urls,
            settings.webhook_secret,
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            timeout_seconds=settings.webhook_timeout_seconds,
            retention_days=settings.events_retention_days,
            batch_size=batch_size,
        )

    def _repository(self) -> EventRepository:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return EventRepository(self._conn)

    def close(self) -> None:
        """Close this worker's connection and HTTP pool."""
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None
        for pool in set(self._http.values()):
            pool.clear()

    def deliver_due(self, stop: threading.Event | None = None) -> DeliveryReport:
        """Attempt one batch of due events, once each (until ``stop`` is set: the rest are let go)."""
        report = DeliveryReport()
        repo = self._repository()
        # Taken before the claim is sent, so never later than the lease the database gives it.
        batch_lease_ends = time.monotonic() + self._lease
        for event in repo.claim_due(self._worker, self._batch_size, self._lease):
            if stop is not None and stop.is_set():
                repo.release(self._worker)
                break
            # While the batch's lease outlasts this event's longest send, nobody else can take
            # it; past that, hold it again first: the lease may have run out while earlier
            # events were sent, and another worker taken this one (then it is theirs to send).
            renew = time.monotonic() + self._send_seconds + HOLD_MARGIN_SECONDS > batch_lease_ends
            if renew and not repo.hold(self._worker, event.seq, self._lease):
                continue
            delivered, errors = self._send(event)
            done = set(self._ids.values()) <= set(delivered)
            retry_in = 0.0 if done else retry_delay(event.attempts + 1, self._retry_base)
            state = repo.finish_attempt(
                self._worker,
                event.seq,
                delivered_to=delivered,
                done=done,
                error="; ".join(errors) or None,
                retry_in=retry_in,
                max_attempts=self._max_attempts,
            )
            if state == "delivered":
                report.delivered += 1
                EVENT_ATTEMPTS.labels("delivered").inc()
            elif state == "dead":
                report.dead += 1
                EVENT_ATTEMPTS.labels("dead").inc()
                log.warning("event %s (%s) is dead after %d attempts: %s", event.id, event.type,
                            event.attempts + 1, "; ".join(errors))  # fmt: skip
            elif state == "pending":
                report.retried += 1
                EVENT_ATTEMPTS.labels("retry").inc()
            report.errors.extend(errors)
        return report

    def _send(self, event: OutboxEvent) -> tuple[list[str], list[str]]:
        """POST ``event`` to each receiver that lacks it; return who has it now (ids), and what failed."""
        body = event_body(event)
        delivered = list(event.delivered_to)
        errors = []
        for url in self._urls:
            if self._ids[url] in delivered:
                continue
            now = datetime.now(UTC)
            headers = {  # replaces the pool's own headers: the User-Agent goes here too
                "User-Agent": USER_AGENT,
                "Content-Type": "application/json",
                "webhook-id": event.id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self._signer.sign(event.id, now, body),
            }
            place = self._places[url]
            started = time.perf_counter()
            try:
                status = self._post(url, body, headers)
            except urllib3.exceptions.HTTPError as exc:
                # Never the URL itself in logs or the table: it may carry a token.
                # (urllib3's NewConnectionError is a ConnectTimeoutError too: a refusal is no timeout.)
                timed_out = isinstance(exc, urllib3.exceptions.TimeoutError) and not isinstance(
                    exc, urllib3.exceptions.NewConnectionError
                )
                WEBHOOK_REQUESTS.labels(place, "timeout" if timed_out else "error").inc()
                errors.append(f"receiver {place}: {type(exc).__name__}")
                continue
            finally:
                WEBHOOK_REQUEST_SECONDS.labels(place).observe(time.perf_counter() - started)
            if 200 <= status < 300:
                WEBHOOK_REQUESTS.labels(place, "delivered").inc()
                delivered.append(self._ids[url])
            else:
                WEBHOOK_REQUESTS.labels(place, "refused").inc()
                errors.append(f"receiver {place}: HTTP {status}")
        return delivered, errors

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST to one receiver and return its status; its answer's body is read as ``_drain`` says."""
        response = self._http[url].request(
            "POST", url, body=body, headers=headers, preload_content=False, decode_content=False
        )
        try:
            if not self._drain(response):
                response.close()  # not worth waiting for: this connection is not kept
        except urllib3.exceptions.HTTPError:
            response.close()  # the body broke off; the status stands: the receiver answered
        finally:
            response.release_conn()
        return response.status

    def _drain(self, response: urllib3.BaseHTTPResponse) -> bool:
        """Read and drop the body, as sent (never unpacked), if it ends within 64 KiB and the timeout.

        Only the status counts; reading a short body keeps the connection for the next
        event. A longer one, or one still coming after ``timeout`` (each read waits at most
        the read timeout), is left: a receiver cannot fill the worker's memory nor hold it.
        """
        if (response.length_remaining or 0) > MAX_ANSWER_BYTES:
            return False
        deadline = time.monotonic() + self._timeout
        read = 0
        while read <= MAX_ANSWER_BYTES and time.monotonic() < deadline:
            chunk = response.read1(16 * 1024, decode_content=False)
            if not chunk:
                return True
            read += len(chunk)
        return False

    def report_outbox(self) -> None:
        """Set the outbox gauges from the table (pending and dead events, the oldest one's wait)."""
        stats = self._repository().stats()
        EVENTS_OUTBOX.labels("pending").set(stats.pending)
        EVENTS_OUTBOX.labels("dead").set(stats.dead)
        EVENTS_OLDEST_DUE_SECONDS.labels("pending").set(stats.oldest_due_seconds)

    def prune(self) -> int:
        """Delete delivered events past the retention period; return how many went."""
        repo = self._repository()
        pruned = 0
        while (gone := repo.prune_delivered(self._retention_seconds)) > 0:
            pruned += gone
        return pruned

    def run(self, stop: threading.Event, *, once: bool = False) -> DeliveryReport:
        """Deliver until ``stop`` is set (or, ``once``, until nothing is due); return the totals."""
        total = DeliveryReport()
        next_prune = next_stats = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    self.prune()
                    next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                if time.monotonic() >= next_stats:
                    self.report_outbox()
                    next_stats = time.monotonic() + STATS_EVERY_SECONDS
                report = self.deliver_due(stop)
            except Exception:  # a database or network hiccup: try again shortly
                log.warning("event delivery failed; retrying", exc_info=True)
                self.close()
                if once:
                    raise
                stop.wait(IDLE_POLL_SECONDS)
                continue
            total.delivered += report.delivered
            total.retried += report.retried
            total.dead += report.dead
            total.errors.extend(report.errors)
            if report.handled == 0:
                if once:
                    break
                stop.wait(IDLE_POLL_SECONDS)
        return total

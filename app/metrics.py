"""The service's Prometheus metrics: what each process counts, served by ``deploy/metrics.py``.

Every metric is created once, here, at import, with the official client.
Under a server that forks workers the client's multi-process mode keeps each
worker's values in files of ``PROMETHEUS_MULTIPROC_DIR``, which the server's
main process sums on a scrape; the mode is chosen when the client is first
imported, which is why the servers set that variable before they import the
app (see ``deploy/metrics.py``). Without it, values stay in this process's
memory (tests, ``flask`` commands). The README's "Metrics" lists each one.

Gauges are ``livesum`` (``livemax`` for those read from the database): a worker's
share disappears with the worker.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # The client writes there as soon as a metric exists (a `flask` command run
    # before the server, which creates it, included).
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

#: this process's metrics (the multi-process collector reads the files instead)
REGISTRY = CollectorRegistry(auto_describe=True)
NAMESPACE = "upload"

# Seconds: a presign takes a millisecond, a save tens, a storage call up to its retries.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter(
    "http_requests",
    "Requests answered, by method, route template and status.",
    ["method", "route", "status"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from the request's first handler to its answer, by method and route template.",
    ["method", "route"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORAGE_CALLS = Counter(
    "storage_calls",
    "Calls to a storage provider (each including its retries), by provider, operation and outcome"
    " (ok, refused, timeout, error).",
    ["provider", "operation", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
STORAGE_CALL_SECONDS = Histogram(
    "storage_call_duration_seconds",
    "Time a storage call took, retries included, by provider and operation.",
    ["provider", "operation"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Pooled database connections lent out right now.",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
DB_POOL_WAITS = Counter(
    "db_pool_waits",
    "Borrows that found every connection lent and had to wait.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
DB_POOL_WAIT_SECONDS = Histogram(
    "db_pool_wait_duration_seconds",
    "How long the borrows that waited waited.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
DB_POOL_TIMEOUTS = Counter(
    "db_pool_timeouts",
    "Borrows that waited DB_POOL_TIMEOUT_SECONDS for nothing (answered 503).",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
DB_CONNECTIONS_OPENED = Counter(
    "db_connections_opened",
    "Database connections opened, by outcome (ok, failed).",
    ["outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
DB_RETRIES = Counter(
    "db_retries",
    "Units of work run again on a fresh connection after theirs broke.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
PRESIGN_RECORDS_QUEUED = Gauge(
    "presign_records_queued",
    "Presign records waiting to be written (including a batch being written).",
    namespace=NAMESPACE,
    multiprocess_mode="livesum",
    registry=REGISTRY,
)
PRESIGN_RECORDS_WRITTEN = Counter(
    "presign_records_written",
    "Presign records written to the database.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
PRESIGN_RECORD_RETRIES = Counter(
    "presign_record_write_retries",
    "Batches of presign records that failed to write and were queued again.",
    namespace=NAMESPACE,
    registry=REGISTRY,
)
PRESIGN_RECORDS_DROPPED = Counter(
    "presign_records_dropped",
    "Presign records not written, by reason: full (presign answered 503 instead), refused (the table"
    " refused the row), exit (the process left with them queued).",
    ["reason"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SWEEP_RUNS = Counter(
    "sweep_runs",
    "Sweeps of abandoned uploads, background or `flask storage sweep`, by outcome (ok, failed).",
    ["outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
SWEEP_UPLOADS = Counter(
    "sweep_uploads",
    "Abandoned uploads a sweep handled, by provider and result (swept, failed, multipart_aborted).",
    ["provider", "result"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RECONCILE_RUNS = Counter(
    "reconcile_runs",
    "Runs of `flask storage reconcile`, by provider.",
    ["provider"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RECONCILE_FINDINGS = Counter(
    "reconcile_findings",
    "What reconcile found or did, by provider and finding (orphan_objects, missing_objects,"
    " deleted_objects, removed_rows).",
    ["provider", "finding"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
RATE_LIMIT_REFUSALS = Counter(
    "rate_limit_refusals",
    "Requests refused with 429, by scope (presign, save, files, parts).",
    ["scope"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)

# The webhook worker's (`flask events deliver`, served on EVENTS_METRICS_PORT). A receiver
# is named by its place in WEBHOOK_URLS, never by its URL (a URL may carry a token).
WEBHOOK_REQUESTS = Counter(
    "webhook_requests",
    "POSTs of an event to a receiver, by receiver (1, 2, ...: its place in WEBHOOK_URLS) and outcome"
    " (delivered: 2xx; refused: any other status; timeout; error: no connection, or it broke).",
    ["receiver", "outcome"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
WEBHOOK_REQUEST_SECONDS = Histogram(
    "webhook_request_duration_seconds",
    "Time from sending an event to a receiver to its answer (or the failure), by receiver.",
    ["receiver"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
EVENT_ATTEMPTS = Counter(
    "event_attempts",
    "Delivery attempts of an event to every receiver that lacked it, by what became of the event"
    " (delivered; retry: a receiver failed, tried again later; dead: its last attempt failed).",
    ["result"],
    namespace=NAMESPACE,
    registry=REGISTRY,
)
# From the outbox itself, so the same whichever worker reports it (max, not a sum, of workers).
EVENTS_OUTBOX = Gauge(
    "events_outbox",
    "Events in the outbox, by state (pending: not yet delivered to every receiver; dead: waiting"
    " for `flask events replay`); read every 15 s by each worker.",
    ["state"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
    registry=REGISTRY,
)
# Labelled (state="pending" only) so that a process that is not a worker shows no series at all.
EVENTS_OLDEST_DUE_SECONDS = Gauge(
    "events_oldest_due_seconds",
    "How long the oldest pending event has been due (0: none is late): a backlog or a stuck"
    " receiver shows here first; read every 15 s by each worker.",
    ["state"],
    namespace=NAMESPACE,
    multiprocess_mode="livemax",
    registry=REGISTRY,
)

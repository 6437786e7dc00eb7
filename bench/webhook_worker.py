"""How fast webhook workers empty the outbox: ``python -m bench.webhook_worker``.

Seeds the outbox of a PostgreSQL shaped like Neon (TCP, SCRAM, TLS where the
build has it) with ``--events`` events of 200 files, and lets 1, 2 and 4
workers (``flask events deliver --once``'s loop, each its own process, which
leaves when it finds nothing to claim) deliver them to a receiver on this
machine that answers 204 at once, over kept-alive connections. Each run
starts from the same outbox; the rounds are interleaved, and one run prints
every row side by side: events a second, and what more workers add; the
last row is one worker that renews its hold on every event before sending it
(as the worker did before it trusted its batch's lease). The
receiver runs in a process of its own, but shares this machine's two cores
with PostgreSQL and the workers: read the ratios, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.events import delivery
from app.events.delivery import WebhookDeliverer
from app.migrations import apply_migrations
from devstack.services import NetworkPostgres, free_port

SECRET = "whsec_" + base64.b64encode(b"the bench's webhook secret, 32b.").decode()
FILES = 200

SEED = """
    INSERT INTO events (type, user_id, provider, object_key, data)
    SELECT 'upload.swept', 'bench-user', 's3', 'key-' || (n %% %(files)s),
           jsonb_build_object('record', jsonb_build_array('key-' || n, 'photo.png', 'image/png', 48213))
    FROM generate_series(1, %(events)s) AS n
"""
RESET = """
    UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = now(), locked_by = NULL,
                      locked_until = NULL, delivered_to = '{}', last_error = NULL, delivered_at = NULL
"""


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _receive(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Receiver).serve_forever()


def _deliver(database_url: str, receiver_url: str, hold_each: bool) -> None:
    if hold_each:  # as before the lease was trusted: a hold renewed before every event
        delivery.HOLD_MARGIN_SECONDS = float("inf")
    worker = WebhookDeliverer(
        lambda: psycopg2.connect(database_url),
        [receiver_url],
        SECRET,
        max_attempts=10,
        retry_base_seconds=5.0,
        timeout_seconds=10.0,
        retention_days=7.0,
    )
    try:
        worker.run(threading.Event(), once=True)
    finally:
        worker.close()


def _run(database_url: str, receiver_url: str, workers: int, hold_each: bool = False) -> float:
    """Deliver the whole outbox with ``workers`` processes; return events a second."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(RESET)
        cur.execute("SELECT count(*) FROM events")
        events = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    processes = [
        multiprocessing.Process(target=_deliver, args=(database_url, receiver_url, hold_each))
        for _ in range(workers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    elapsed = time.perf_counter() - started
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events WHERE state = 'delivered'")
        delivered = int(cur.fetchone()[0])  # type: ignore[index]
    conn.close()
    if delivered != events:
        raise SystemExit(f"{workers} worker(s) delivered {delivered} of {events} events")
    return events / elapsed


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_worker", description=summary)
    parser.add_argument("--events", type=int, default=3000, help="events in the outbox (default 3000)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="upload-bench-webhooks-"))
    postgres = NetworkPostgres(workdir / "postgres")
    port = free_port()
    receiver = multiprocessing.Process(target=_receive, args=(port,), daemon=True)
    try:
        database_url = postgres.start()
        apply_migrations(database_url)
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute(SEED, {"events": args.events, "files": FILES})
        conn.close()
        receiver.start()
        receiver_url = f"http://127.0.0.1:{port}/hooks"
        # (row, workers, hold each event again before its send, as before the batch's lease was trusted)
        rows = [("1", 1, False), ("2", 2, False), ("4", 4, False), ("1, hold each", 1, True)]
        rates: dict[str, list[float]] = {row: [] for row, _, _ in rows}
        for round_number in range(1, args.rounds + 1):
            print(f"round {round_number}/{args.rounds} ...", flush=True)
            for row, workers, hold_each in rows:
                rates[row].append(_run(database_url, receiver_url, workers, hold_each))
        print(f"\n{args.events} events of {FILES} files, median of {args.rounds} round(s):")
        print(f"{'workers':>13} {'events/s':>9} {'vs 1 worker':>12}   rounds")
        one = statistics.median(rates["1"])
        for row, _, _ in rows:
            median = statistics.median(rates[row])
            spread = ", ".join(f"{rate:.0f}" for rate in rates[row])
            print(f"{row:>13} {median:>9.0f} {median / one:>11.2f}x   {spread}")
    finally:
        if receiver.is_alive():
            receiver.terminate()
        postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The background sweeper's thread: one per process, and a failing round never stops it."""

from __future__ import annotations

import threading
import time

import psycopg2

from app.maintenance.background import BackgroundSweeper


class FailingConnect:
    """A database that is down: every connection attempt fails, and is counted."""

    def __init__(self) -> None:
        self.attempts = 0
        self.lock = threading.Lock()

    def __call__(self) -> psycopg2.extensions.connection:
        with self.lock:
            self.attempts += 1
        raise psycopg2.OperationalError("connection refused")


def test_a_round_that_fails_is_logged_and_the_next_one_tries_again() -> None:
    connect = FailingConnect()
    sweeper = BackgroundSweeper(connect, {"s3": object()}, interval=0.02, grace=0, url_seconds=300)  # type: ignore[dict-item]
    sweeper.ensure_started()
    try:
        deadline = time.monotonic() + 5
        while connect.attempts < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert connect.attempts >= 3
    finally:
        sweeper.stop()
    assert sweeper._thread is not None and not sweeper._thread.is_alive()


def test_each_process_starts_one_thread_however_many_requests_ask() -> None:
    sweeper = BackgroundSweeper(FailingConnect(), {"s3": object()}, interval=60, grace=0, url_seconds=300)  # type: ignore[dict-item]
    sweeper.ensure_started()
    first = sweeper._thread
    for _ in range(100):
        sweeper.ensure_started()
    try:
        assert sweeper._thread is first
        assert [t for t in threading.enumerate() if t.name == "upload-sweeper" and t.is_alive()] == [first]
    finally:
        sweeper.stop()


def test_no_interval_or_no_provider_means_no_thread() -> None:
    for interval, providers in ((0.0, {"s3": object()}), (60.0, {})):
        sweeper = BackgroundSweeper(FailingConnect(), providers, interval=interval, grace=0, url_seconds=300)  # type: ignore[arg-type]
        sweeper.ensure_started()
        assert not sweeper.enabled and sweeper._thread is None

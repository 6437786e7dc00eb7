"""The sweep, run by the service itself: an unsaved upload is gone minutes after its URL expires.

Without it an abuser who never calls save-metadata keeps what they uploaded
until an operator runs ``flask storage sweep``. Each process runs one daemon
thread, started by its first request (so after gunicorn forks, never in a
CLI command), that sweeps every ``SWEEP_INTERVAL_SECONDS`` (with a random
spread, so replicas and workers do not all wake together) the uploads whose
last URL expired ``SWEEP_GRACE_SECONDS`` ago or more. Several processes
sweeping at once is safe by the sweep's own claim protocol (``sweep.py``).

The thread opens a connection of its own for each round (never one of the
request pool) and closes it after, so it holds nothing between rounds; a
round that fails (database or storage down, a statement over its timeout) is
logged and the next one tries again. It aborts only multipart uploads under
keys this service issued, started more than a URL's lifetime plus the grace ago.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable, Mapping

from psycopg2.extensions import connection as Connection

from ..repository import MaintenanceRepository
from ..storage import StorageProvider
from ..uploads.keys import KeySigner
from .sweep import SweepReport, sweep

log = logging.getLogger(__name__)

Connect = Callable[[], Connection]


class BackgroundSweeper:
    """One thread per process that sweeps abandoned uploads every ``interval`` seconds."""

    def __init__(
        self,
        connect: Connect,
        providers: Mapping[str, StorageProvider],
        interval: float,
        grace: float,
        url_seconds: float,
        *,
        events: bool = False,
    ):
        self._connect = connect
        self._events = events
        self._providers = providers
        self._interval = interval
        self._grace = grace
        # A multipart upload younger than a URL's lifetime plus the grace is left alone
        # whatever its record says: the record may not be written yet (the recorder
        # writes behind the answer), and the browser may be about to send its parts.
        self._older_than = url_seconds + grace
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @property
    def enabled(self) -> bool:
        """Whether this process sweeps by itself (``SWEEP_INTERVAL_SECONDS`` above 0)."""
        return self._interval > 0 and bool(self._providers)

    def ensure_started(self) -> None:
        """Start the thread in this process if it is not running (cheap: called on every request)."""
        if self._pid == os.getpid() or not self.enabled:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            # A forked child has the parent's attributes but not its thread.
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="upload-sweeper", daemon=True)
            self._pid = os.getpid()
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread after its current round."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def sweep_once(self) -> SweepReport | None:
        """Sweep now; None when the database role may not see every user's uploads."""
        conn = self._connect()
        try:
            repo = MaintenanceRepository(conn, events=self._events)
            if repo.row_security_hides_rows():
                return None
            return sweep(
                repo, self._providers, self._older_than, expired_for=self._grace, ours=KeySigner.is_tagged
            )
        finally:
            conn.close()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self._interval * random.uniform(0.5, 1.5)):  # noqa: S311 - spread, not secrecy
            try:
                report = self.sweep_once()
            except Exception:
                # Whatever failed (the database, a provider), the next round tries again.
                log.warning("background sweep failed; retrying in %.0f s", self._interval, exc_info=True)
                continue
            if report is None:
                log.warning(
                    "background sweep stopped: row-level security hides other users' uploads from this "
                    "database role; run `flask storage sweep` as the tables' owner instead"
                )
                return
            if report.total_swept or report.total_failed or report.problems or sum(report.aborted.values()):
                log.info(
                    "background sweep: %d swept, %d failed, %d multipart aborted, %d records forgotten%s",
                    report.total_swept,
                    report.total_failed,
                    sum(report.aborted.values()),
                    report.forgotten,
                    "".join(f"; {problem}" for problem in report.problems),
                )

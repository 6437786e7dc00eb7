"""Presign records, written behind the response in batches by one thread per process.

A presign used to wait for its own INSERT: one round trip and one commit per
URL, which under load was most of a presign's time (see bench/). Ownership
no longer needs the record (the key's tags prove it, see keys.py), so a
presign queues it here and answers; a writer thread drains the queue with one
multi-row INSERT per batch. The records serve the sweep of abandoned uploads
and the checks for keys in the guides' untagged form.

If the database is down the queue holds up to ``max_queued`` records and the
writer retries with backoff; beyond that, presign answers 503 rather than
forget what it issued. At a worker's exit (gunicorn's or granian's) the
queue is flushed. A process killed outright loses at most what was queued:
those keys still save (their tags prove ownership), they are only unknown
to the sweep until ``reconcile`` finds their objects.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

import psycopg2

from ..db import DatabaseUnavailable
from ..metrics import (
    PRESIGN_RECORD_RETRIES,
    PRESIGN_RECORDS_DROPPED,
    PRESIGN_RECORDS_QUEUED,
    PRESIGN_RECORDS_WRITTEN,
)
from ..repository import PendingUpload

log = logging.getLogger(__name__)

BATCH_SIZE = 500
# Once woken, the writer waits this long for more records before writing.
# Each batch has a fixed cost (a round trip, a commit, the server's parse and
# plan) that under load was worth more than the rows: measured with wrk at 64
# connections, presign went from 2,594/s (5 ms) to 3,015/s (50 ms) and 3,308/s
# (200 ms), against 3,438/s with no records at all. Nothing waits for a
# record (a flush cuts the wait short), so only a crash would notice.
LINGER_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0
EXIT_FLUSH_SECONDS = 5.0

_FORK_LOCK = threading.Lock()

BatchWriter = Callable[[Sequence[PendingUpload]], None]


class PendingRecorder:
    """A bounded queue of presign records and the thread that writes them."""

    def __init__(self, write_batch: BatchWriter, *, max_queued: int = 10_000):
        self._write_batch = write_batch
        self._max_queued = max_queued
        self._cond = threading.Condition()
        self._queue: deque[PendingUpload] = deque()
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self._flushers = 0
        self._exit_hook_pid = 0
        self._exit_flushed_pid = 0

    def record(self, record: PendingUpload) -> None:
        """Queue one record; refuse (503) when the database has fallen too far behind."""
        self._check_fork()
        with self._cond:
            if len(self._queue) >= self._max_queued:
                PRESIGN_RECORDS_DROPPED.labels("full").inc()
                raise DatabaseUnavailable("too many uploads waiting to be recorded; try again shortly")
            self._queue.append(record)
            PRESIGN_RECORDS_QUEUED.inc()
            if self._thread is None:
                self._closed = False
                self._start()
            if len(self._queue) == 1:
                # The writer may be waiting for work (while it lingers, let it);
                # all waiters, as a flush may be waiting on the same condition.
                self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written; False if ``timeout`` ran out first."""
        deadline = time.monotonic() + timeout
        self._check_fork()
        with self._cond:
            self._flushers += 1
            self._cond.notify_all()  # a lingering writer writes now
            try:
                while self._queue or self._in_flight:
                    if self._thread is None:
                        return False  # closed: nobody left to write them
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            finally:
                self._flushers -= 1
        return True

    def close(self, timeout: float = EXIT_FLUSH_SECONDS) -> bool:
        """Flush, then stop the writer thread (a later ``record`` starts a new one)."""
        flushed = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return flushed

    @property
    def queued(self) -> int:
        """Records not yet written (including a batch being written)."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def _check_fork(self) -> None:
        # A forked child inherits the queue and lock but not the thread: start
        # afresh (the lock too: another thread may have held it at the fork).
        if self._pid != os.getpid():
            with _FORK_LOCK:
                if self._pid != os.getpid():
                    self._cond = threading.Condition()
                    self._queue = deque()
                    self._in_flight = 0
                    self._flushers = 0
                    self._thread = None
                    self._pid = os.getpid()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="pending-recorder", daemon=True)
        self._thread.start()
        if self._exit_hook_pid != self._pid:
            # gunicorn's workers leave through sys.exit, which runs atexit's
            # hooks; granian's are multiprocessing children, which leave through
            # os._exit after running multiprocessing's finalizers instead.
            atexit.register(self._flush_at_exit, self._pid)
            multiprocessing.util.Finalize(None, self._flush_at_exit, args=(self._pid,), exitpriority=10)
            self._exit_hook_pid = self._pid

    def _flush_at_exit(self, pid: int) -> None:
        # Registered twice (atexit, and multiprocessing's finalizers, which gunicorn's
        # workers also run at exit): flush once, or the wait and the count would double.
        if pid != os.getpid() or self._exit_flushed_pid == pid:
            return
        self._exit_flushed_pid = pid
        if not self.flush(EXIT_FLUSH_SECONDS):
            PRESIGN_RECORDS_DROPPED.labels("exit").inc(self.queued)
            log.warning("exiting with %d presign records not written", self.queued)

    def _take_batch(self) -> list[PendingUpload] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            self._cond.wait_for(
                lambda: len(self._queue) >= BATCH_SIZE or self._closed or self._flushers > 0,
                LINGER_SECONDS,
            )
            count = min(len(self._queue), BATCH_SIZE)
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight += count
            return batch

    def _done(self, batch: Sequence[PendingUpload], written: bool) -> None:
        with self._cond:
            if not written:
                # Back to the front, in order, for the next attempt.
                self._queue.extendleft(reversed(batch))
            else:
                PRESIGN_RECORDS_QUEUED.dec(len(batch))
            self._in_flight -= len(batch)
            self._cond.notify_all()

    def _write(self, batch: Sequence[PendingUpload]) -> None:
        try:
            self._write_batch(batch)
        except psycopg2.Error as exc:
            # Not a connection problem (those arrive as DatabaseUnavailable):
            # the batch holds a record the table refuses. Keep the others.
            log.error("presign batch refused (%s); writing its records one by one", type(exc).__name__)
            dropped = 0
            for record in batch:
                try:
                    self._write_batch([record])
                except psycopg2.Error as one:
                    dropped += 1
                    log.error("dropped the presign record of one key: %s", type(one).__name__)
            PRESIGN_RECORDS_DROPPED.labels("refused").inc(dropped)
            PRESIGN_RECORDS_WRITTEN.inc(len(batch) - dropped)
        else:
            PRESIGN_RECORDS_WRITTEN.inc(len(batch))

    def _run(self) -> None:
        backoff = 0.1
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - keep the records, keep the thread
                self._done(batch, written=False)
                PRESIGN_RECORD_RETRIES.inc()
                log.warning(
                    "could not record %d presigned uploads (%s); retrying in %.1f s",
                    len(batch),
                    getattr(exc, "message", type(exc).__name__),
                    backoff,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.1
            self._done(batch, written=True)

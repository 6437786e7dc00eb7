"""Request ids, one JSON log object per line, one access-log line and the request metrics per request.

Log lines carry the request id and user id of the request they belong to.
Nothing here logs headers, query strings or bodies, which is where tokens and
signed URLs travel.
"""

from __future__ import annotations

import atexit
import json
import logging
import multiprocessing.util
import os
import queue
import re
import sys
import threading
import time
import uuid
import weakref
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

from .metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients and proxies as is; anything else is replaced, so a
# header cannot inject text into the logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

access_log = logging.getLogger("app.access")
# The methods the request metrics name; any other is counted as "other".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# How often the log writer writes what has queued up (see BackgroundStreamHandler).
LOG_WRITE_INTERVAL_SECONDS = 0.05


class RequestContextFilter(logging.Filter):
    """Stamp each record with the current request's id and user, if any."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            record.user_id = g.get("user_id")
        return True


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    # Attributes every LogRecord has; anything else was passed in ``extra``.
    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and value is not None:
                entry[key] = value
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class BackgroundStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler whose formatting and writing happen on one thread per process.

    With a plain StreamHandler every request thread formatted its access line
    and wrote it under the handler's lock; the write releases the GIL, so the
    threads queued on that lock and on each other. Measured under granian at
    64 connections, 2 workers x 4 threads: a presign cost 594 us of CPU with
    no access line and 840 us with one (70 us more, not 250, with one thread
    per worker). Here the caller runs the filters (they read the request's
    context), renders the message (its arguments may change once it returns)
    and queues the record; the writer thread formats what has queued up,
    writes it at once and, when it has emptied the queue, sleeps a little so
    lines gather.

    - No line is dropped: past ``MAX_QUEUED`` records (a stdout nobody reads)
      the caller writes its own line, as a plain StreamHandler would, so
      memory stays bounded and the callers slow down instead.
    - Forks: the write lock is held across ``os.fork`` (no child inherits a
      stdout buffer locked mid-write), and a child starts its own writer with
      a new queue (a thread may have held the old one's lock at the fork).
    - Exit: atexit and multiprocessing's finalizers (granian's workers leave
      through os._exit) drain the queue; a process killed outright loses what
      was queued. ``flush`` (logging.shutdown, dictConfig) drains too: the
      writer takes its own lock, never the handler's, so a caller holding the
      handler's lock cannot stall it.
    - A writer that died (it should not: each batch's errors are caught) is
      started again by the next record.
    """

    MAX_QUEUED = 100_000

    def __init__(self, stream: Any = None):
        super().__init__(stream)
        self._pid = 0
        self._queue: queue.SimpleQueue[logging.LogRecord | threading.Event] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._write_lock = threading.Lock()
        _BACKGROUND_HANDLERS.add(self)

    def handle(self, record: logging.LogRecord) -> bool:
        if not self.filter(record):
            return False
        try:
            # What the caller's arguments say now, not when the writer gets to them.
            record.msg, record.args = record.getMessage(), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
        except Exception:  # noqa: BLE001 - logging's rule: a bad record is reported, never raised
            self.handleError(record)
            return False
        writer = self._writer
        if self._pid != os.getpid() or writer is None or not writer.is_alive():
            self._start()
        if self._queue.qsize() >= self.MAX_QUEUED:
            self._write([self.format(record)])
        else:
            self._queue.put(record)
        return True

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every record queued so far is written; False if ``timeout`` ran out."""
        writer = self._writer
        if self._pid != os.getpid() or writer is None or writer is threading.current_thread():
            return True
        written = threading.Event()
        self._queue.put(written)
        return written.wait(timeout) or not writer.is_alive()

    def flush(self) -> None:
        self.drain()
        with self._write_lock:
            super().flush()

    def _after_fork_in_child(self) -> None:
        self._write_lock = threading.Lock()
        self._writer = None  # the thread did not come along; handle() starts one

    def _start(self) -> None:
        with self._start_lock:
            writer = self._writer
            if self._pid == os.getpid() and writer is not None and writer.is_alive():
                return
            if self._pid != os.getpid():
                self._queue = queue.SimpleQueue()
                atexit.register(self.drain)
                multiprocessing.util.Finalize(None, self.drain, exitpriority=0)
            self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
            self._pid = os.getpid()
            self._writer.start()

    def _write_forever(self) -> None:
        while True:
            items = [self._queue.get()]
            with suppress(queue.Empty):
                while len(items) < 1000:
                    items.append(self._queue.get_nowait())
            try:
                lines = []
                for item in items:
                    if isinstance(item, logging.LogRecord):
                        try:
                            lines.append(self.format(item))
                        except Exception:  # noqa: BLE001 - logging's rule: a bad record never stops logging
                            self.handleError(item)
                if lines:
                    self._write(lines)
            except Exception:  # noqa: BLE001 - the writer outlives any one batch
                self.handleError(logging.makeLogRecord({"msg": "writing log lines failed"}))
            for item in items:
                if isinstance(item, threading.Event):
                    item.set()
            if len(items) < 1000:
                # Let lines gather: waking for each one cost the request threads
                # more (thread switches, GIL hand-offs) than writing them.
                time.sleep(LOG_WRITE_INTERVAL_SECONDS)

    def _write(self, lines: list[str]) -> None:
        with self._write_lock:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()


# Every BackgroundStreamHandler of the process, for the fork hooks below (weakly: one
# replaced by a later dictConfig is not kept alive by them).
_BACKGROUND_HANDLERS: weakref.WeakSet[BackgroundStreamHandler] = weakref.WeakSet()


def _before_fork() -> None:
    for handler in list(_BACKGROUND_HANDLERS):
        handler._write_lock.acquire()


def _after_fork_in_parent() -> None:
    for handler in list(_BACKGROUND_HANDLERS):
        handler._write_lock.release()


def _after_fork_in_child() -> None:
    for handler in list(_BACKGROUND_HANDLERS):
        handler._after_fork_in_child()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` for JSON lines on stdout (gunicorn uses it too)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stdout": {
                "()": BackgroundStreamHandler,
                "stream": sys.stdout,
                "formatter": "json",
                "filters": ["request"],
            }
        },
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            # Our own access line replaces gunicorn's and werkzeug's.
            "gunicorn.access": {"level": "WARNING", "handlers": ["stdout"], "propagate": False},
            "werkzeug": {"level": "WARNING"},
            # The Azure SDK logs every HTTP exchange at INFO.
            "azure": {"level": "WARNING"},
        },
    }


def _start_request() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish_request(response: Response) -> Response:
    response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
    started = g.get("request_started")
    # The route's template (/s3/files/<int:file_id>), never the path: ids would be series.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    # Any token is a method to the HTTP layer: one a client makes up is "other", not a series.
    method = request.method if request.method in KNOWN_METHODS else "other"
    HTTP_REQUESTS.labels(method, route, response.status_code).inc()
    if started is not None:
        HTTP_REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
    if not access_log.isEnabledFor(logging.INFO):
        return response
    access_log.info(
        "request",
        extra={
            "method": request.method,
            # The path only: query strings may carry signatures or tokens.
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "scheme": request.scheme,
            "host": request.host,
            "client": request.remote_addr,
        },
    )
    return response


def init_app(app: Flask, trusted_proxy_count: int) -> None:
    """Trust ``trusted_proxy_count`` proxies' forwarded headers; give every request an id and a log line."""
    if trusted_proxy_count > 0:
        n = trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n, x_prefix=n)  # type: ignore[method-assign]
    app.before_request(_start_request)
    app.after_request(_finish_request)

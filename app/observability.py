"""Request ids, one JSON log object per line, and one access-log line per request.

Log lines carry the request id and user id of the request they belong to.
Nothing here logs headers, query strings or bodies, which is where tokens and
signed URLs travel.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from werkzeug.middleware.proxy_fix import ProxyFix

REQUEST_ID_HEADER = "X-Request-ID"
# Accepted from clients and proxies as is; anything else is replaced, so a
# header cannot inject text into the logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

access_log = logging.getLogger("app.access")


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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """Return a ``logging.config.dictConfig`` for JSON lines on stdout (gunicorn uses it too)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
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
    if not access_log.isEnabledFor(logging.INFO):
        return response
    started = g.get("request_started")
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

"""Gunicorn settings for the container; each comes from an environment variable.

The image runs ``gunicorn --config deploy/gunicorn.conf.py "app:create_app()"``
(see entrypoint.sh); the tests run exactly that.
"""

from __future__ import annotations

import os
import sys

from dotenv import load_dotenv
from gunicorn.glogging import Logger

from app.config import ConfigError, load_settings
from app.observability import logging_config


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        sys.exit(f"{name}: expected a whole number, got {raw!r}")


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        sys.exit(f"{name}: expected a number, got {raw!r}")


load_dotenv()

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{_int('PORT', 3000)}"  # noqa: S104 - a container listens on all interfaces
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)
# A request that runs longer than this is killed; storage and database
# timeouts are set well below it, so clients get a 5xx of ours first.
timeout = _int("GUNICORN_TIMEOUT", 30)
# On SIGTERM, in-flight requests get this long to finish.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Open connections one worker takes before it stops accepting. gthread's
# default (1000) lets one worker take every keep-alive connection while the
# others idle: measured here, one worker at 99% CPU and the other at 0%.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads * 8)
# Forwarded headers are ProxyFix's job (TRUSTED_PROXY_COUNT), not gunicorn's.
forwarded_allow_ips = ""


class AppWritesAccessLog(Logger):
    """gunicorn's logger without its access line: the app writes its own, as JSON.

    With ``logconfig_dict`` set, gunicorn builds every access line's fields
    (about 7% of a worker's time, measured with py-spy under wrk) even though
    its access logger is silenced.
    """

    access_log_enabled = False

    def access(self, resp: object, req: object, environ: object, request_time: object) -> None:
        return None


# The app writes one JSON access line per request itself.
accesslog = None
logger_class = AppWritesAccessLog
logconfig_dict = logging_config(os.environ.get("LOG_LEVEL", "INFO").upper())
control_socket_disable = True
# One database connection per thread, plus one for the thread that writes
# presign records behind the answers: the pool never makes a thread wait.
os.environ.setdefault("DB_POOL_SIZE", str(threads + 1))


def post_worker_init(worker: object) -> None:
    """Shorten the GIL switch interval in each worker.

    A thread back from a database round trip waits for the GIL; with the
    default 5 ms interval it queues behind a CPU-busy thread for that long
    (the I/O convoy effect), which capped presign at a third of the CPU here.
    """
    sys.setswitchinterval(_float("GIL_SWITCH_INTERVAL_SECONDS", 0.0005))


# Refuse to start, once and clearly, rather than let every worker fail to boot.
try:
    settings = load_settings(os.environ)
except ConfigError as exc:
    sys.exit(str(exc))

# A storage call that could outlast the worker timeout would be killed
# mid-request instead of answering 504: refuse such a configuration.
storage_budget = settings.storage_max_attempts * (
    settings.storage_connect_timeout_seconds + settings.storage_read_timeout_seconds + 1
)
if storage_budget >= timeout:
    sys.exit(
        f"GUNICORN_TIMEOUT ({timeout}s) must exceed the worst storage call: STORAGE_MAX_ATTEMPTS x"
        " (STORAGE_CONNECT_TIMEOUT_SECONDS + STORAGE_READ_TIMEOUT_SECONDS + 1s backoff)"
        f" = {storage_budget:.0f}s"
    )

"""Gunicorn settings for the container; each comes from an environment variable.

The image runs ``gunicorn --config deploy/gunicorn.conf.py "app:create_app()"``
(see entrypoint.sh); the tests run exactly that.
"""

from __future__ import annotations

import os
import sys

from dotenv import load_dotenv
from gunicorn.glogging import Logger

import deploy  # noqa: F401 - first: readies the workers' metrics folder before the app is imported
from app.config import (
    LOG_LEVELS,
    ConfigError,
    EnvReader,
    load_settings,
    server_ports,
    storage_call_budget_seconds,
)
from app.observability import logging_config
from deploy import metrics

load_dotenv()

# Refuse to start, once and clearly, rather than let every worker fail to boot.
try:
    settings = load_settings(os.environ)
except ConfigError as exc:
    sys.exit(str(exc))
# The server's own variables, read and refused with the service's messages.
env = EnvReader(os.environ)

host = env.get("HOST") or "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
port, metrics_port = server_ports(env)
bind = f"{host}:{port}"
workers = env.integer("WEB_CONCURRENCY", 2, 1, 256)
worker_class = "gthread"
# WEB_THREADS is the service's too: the database pool is sized from it (app/config.py).
threads = settings.server_threads
# A request that runs longer than this is killed; storage and database
# timeouts are set well below it, so clients get a 5xx of ours first.
timeout = env.integer("GUNICORN_TIMEOUT", 30, 1, 3600)
# On SIGTERM, in-flight requests get this long to finish.
graceful_timeout = env.integer("GUNICORN_GRACEFUL_TIMEOUT", 30, 0, 3600)
keepalive = env.integer("GUNICORN_KEEPALIVE", 5, 0, 3600)
# Open connections one worker takes before it stops accepting. gthread's
# default (1000) lets one worker take every keep-alive connection while the
# others idle: measured here, one worker at 99% CPU and the other at 0%.
worker_connections = env.integer("GUNICORN_WORKER_CONNECTIONS", threads * 8, 1, 100_000)
gil_switch_interval = env.number("GIL_SWITCH_INTERVAL_SECONDS", 0.0005, 0.00001, 1.0)
log_level = env.choice("LOG_LEVEL", "info", LOG_LEVELS)
if env.problems:
    sys.exit(str(ConfigError(env.problems)))
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
logconfig_dict = logging_config(log_level.upper())
control_socket_disable = True


def when_ready(server: object) -> None:
    """Serve the workers' summed metrics on METRICS_PORT from the master, once it listens."""
    if metrics_port is not None:
        metrics.serve(host, metrics_port)


def post_worker_init(worker: object) -> None:
    """Shorten the GIL switch interval in each worker.

    A thread back from a database round trip waits for the GIL; with the
    default 5 ms interval it queues behind a CPU-busy thread for that long
    (the I/O convoy effect), which capped presign at a third of the CPU here.
    """
    sys.setswitchinterval(gil_switch_interval)


# A storage call that could outlast the worker timeout would be killed
# mid-request instead of answering 504: refuse such a configuration.
storage_budget = storage_call_budget_seconds(settings)
if storage_budget >= timeout:
    sys.exit(
        f"GUNICORN_TIMEOUT ({timeout}s) must exceed the worst storage call: STORAGE_MAX_ATTEMPTS x"
        " (STORAGE_CONNECT_TIMEOUT_SECONDS + STORAGE_READ_TIMEOUT_SECONDS + 1s backoff)"
        f" = {storage_budget:.0f}s"
    )

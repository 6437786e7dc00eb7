"""The production server: granian serving the app's factory, each setting from an environment variable.

The image runs ``python -m deploy.granian_server`` (see entrypoint.sh); the
tests and ``bench/`` run exactly that. An optional argument names another
factory (``bench.apps.echo:create_app``), served the same way.

Why granian rather than gunicorn's gthread workers (measured in bench/, see
the README's "Which server"): its HTTP/1 parsing, keep-alive and slow-client
handling are Rust on an event loop, so a connection that trickles its
headers holds no Python thread (under gthread, 50 such connections stopped
the service answering anyone), and the Python threads only run the app.

What each piece becomes here:
- the configuration is checked once, in the main process, before a worker
  starts (a bad variable exits naming it, as under gunicorn);
- workers are forked processes that build the app after the fork (the pool,
  the presign-record writer and the sweeper are per process, started lazily);
- on SIGTERM each worker stops accepting, lets in-flight requests finish,
  then returns through multiprocessing, whose exit runs the recorder's flush;
  a worker still busy after GRACEFUL_TIMEOUT_SECONDS is killed;
- a worker that dies is replaced (``respawn_failed_workers``);
- forwarded headers stay ProxyFix's (TRUSTED_PROXY_COUNT); request size is
  Flask's MAX_CONTENT_LENGTH; the app writes its own JSON access line;
- with METRICS_PORT, a thread of the main process serves the workers'
  summed metrics there (deploy/metrics.py).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from dotenv import load_dotenv

from app.config import (
    LOG_LEVELS,
    ConfigError,
    EnvReader,
    Settings,
    load_settings,
    server_ports,
    storage_call_budget_seconds,
)
from app.observability import logging_config
from app.uploads.recorder import EXIT_FLUSH_SECONDS
from deploy import metrics

DEFAULT_FACTORY = "app:create_app"
# What granian's workers stop on.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Above what a worker needs with the default settings (drain_budget_seconds: 42 s).
# The orchestrator's own stop grace must exceed it (Docker's default is 10 s).
DEFAULT_GRACEFUL_TIMEOUT_SECONDS = 45


def drain_budget_seconds(settings: Settings) -> float:
    """How long a worker may need after SIGTERM: its slowest request, then its exit flush.

    A request may wait for a pooled connection, run its slowest statement and
    its slowest storage call; then the presign records still queued are
    written (recorder.EXIT_FLUSH_SECONDS).
    """
    request = (
        settings.db_pool_timeout_seconds
        + settings.db_statement_timeout_ms / 1000
        + storage_call_budget_seconds(settings)
    )
    return request + EXIT_FLUSH_SECONDS


def granian_options(env: EnvReader, settings: Settings) -> dict[str, Any]:
    """Granian's constructor arguments from the environment; problems go to ``env.problems``."""
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    workers = env.integer("WEB_CONCURRENCY", 2, 1, 256)
    graceful = env.integer("GRACEFUL_TIMEOUT_SECONDS", DEFAULT_GRACEFUL_TIMEOUT_SECONDS, 1, 3600)
    # A client gets this long to send a request's headers; then the connection is closed.
    header_timeout = env.integer("HTTP_HEADER_READ_TIMEOUT_SECONDS", 10, 1, 60)
    keep_alive = env.switch("HTTP_KEEP_ALIVE", True)
    # Requests one worker holds at once (running or waiting for a thread); beyond
    # it, new connections wait in the listen backlog instead of in memory.
    backpressure = env.integer("WEB_BACKPRESSURE", 128, 1, 100_000)
    level = env.choice("LOG_LEVEL", "info", LOG_LEVELS)
    budget = drain_budget_seconds(settings)
    if budget >= graceful:
        env.problems.append(
            f"GRACEFUL_TIMEOUT_SECONDS ({graceful}s) must exceed what a worker may need to finish: its"
            " slowest request (DB_POOL_TIMEOUT_SECONDS + DB_STATEMENT_TIMEOUT_MS + STORAGE_MAX_ATTEMPTS x"
            " (STORAGE_CONNECT_TIMEOUT_SECONDS + STORAGE_READ_TIMEOUT_SECONDS + 1s backoff)) and"
            f" {EXIT_FLUSH_SECONDS:.0f}s to write its presign records = {budget:.0f}s"
        )
    return {
        "address": env.get("HOST") or "0.0.0.0",  # noqa: S104 - a container listens on all interfaces
        "port": server_ports(env)[0],
        "interface": Interfaces.WSGI,
        "workers": workers,
        "blocking_threads": settings.server_threads,
        "backpressure": backpressure,
        "backlog": env.integer("WEB_BACKLOG", 1024, 128, 65535),
        "http1_settings": HTTP1Settings(header_read_timeout=header_timeout * 1000, keep_alive=keep_alive),
        "log_level": LogLevels(level),
        "log_dictconfig": logging_config(level.upper()),
        # The app writes one JSON access line per request itself.
        "log_access": False,
        "respawn_failed_workers": True,
        "workers_kill_timeout": graceful,
    }


def worker_loader(factory_spec: str, switch_interval: float) -> Callable[[Any], Any]:
    """Return what each worker calls, after the fork, to build its app."""

    def load(_target: object) -> Any:
        # A thread back from a database round trip waits for the GIL; with the
        # default 5 ms interval it queues behind a CPU-busy thread that long.
        sys.setswitchinterval(switch_interval)
        # granian's worker installs its SIGTERM handler only once the app is
        # built: a SIGTERM the main process sends while a worker starts would be
        # lost, and the worker would then serve on until killed
        # (GRACEFUL_TIMEOUT_SECONDS later). Catch it meanwhile.
        stop_requested = threading.Event()

        def while_starting(_signum: int, _frame: object) -> None:
            stop_requested.set()

        for signum in STOP_SIGNALS:
            signal.signal(signum, while_starting)
        module_name, _, attribute = factory_spec.partition(":")
        module = __import__(module_name, fromlist=[attribute])
        app = getattr(module, attribute)()
        if stop_requested.is_set():
            # The server is stopping and this worker has served nothing: leave now.
            logging.shutdown()
            os._exit(0)
        threading.Thread(
            target=_forward_a_late_stop, args=(while_starting, stop_requested), daemon=True
        ).start()
        return app

    return load


def _forward_a_late_stop(handler: Callable[[int, object], None], stop_requested: threading.Event) -> None:
    """Once granian's own handler replaces ``handler``, send it a stop that ``handler`` caught."""
    deadline = time.monotonic() + 30
    while signal.getsignal(signal.SIGTERM) is handler and time.monotonic() < deadline:
        time.sleep(0.01)
    if stop_requested.is_set():
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    factory_spec = args[0] if args else DEFAULT_FACTORY
    load_dotenv()
    # Refuse to start, once and clearly, rather than let every worker fail to boot.
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    env = EnvReader(os.environ)
    options = granian_options(env, settings)
    _, metrics_port = server_ports(env)
    switch_interval = env.number("GIL_SWITCH_INTERVAL_SECONDS", 0.0005, 0.00001, 1.0)
    if env.problems:
        print(ConfigError(env.problems), file=sys.stderr)
        return 1
    if metrics_port is not None:
        try:
            metrics.serve(options["address"], metrics_port)
        except OSError as exc:
            print(f"cannot serve metrics on METRICS_PORT {metrics_port}: {exc.strerror}", file=sys.stderr)
            return 1

    from granian import Granian
    from granian.errors import ConfigurationError

    server = Granian(factory_spec, **options)
    try:
        server.serve(target_loader=worker_loader(factory_spec, switch_interval))
    except ConfigurationError as exc:  # granian has logged what it refused
        print(f"granian refused its configuration: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

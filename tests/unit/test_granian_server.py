"""deploy/granian_server.py: what the image's server is told, from the environment."""

from __future__ import annotations

import pytest

from app.config import EnvReader, load_settings, storage_call_budget_seconds
from deploy.granian_server import drain_budget_seconds, granian_options

DB = {"DATABASE_URL": "postgresql://localhost/test", "AUTH_MODE": "dev", "APP_ENV": "test"}


def options(**env: str) -> tuple[dict[str, object], list[str]]:
    merged = {**DB, **env}
    reader = EnvReader(merged)
    found = granian_options(reader, load_settings(merged))
    return found, reader.problems


def test_defaults_serve_two_workers_with_the_services_threads_on_port_3000() -> None:
    found, problems = options()
    assert problems == []
    assert (found["address"], found["port"], found["workers"]) == ("0.0.0.0", 3000, 2)  # noqa: S104
    assert found["blocking_threads"] == 4  # the pool is sized from the same number
    assert found["workers_kill_timeout"] == 45
    assert found["respawn_failed_workers"] is True
    assert found["log_access"] is False  # the app writes its own JSON access line
    assert found["http1_settings"].header_read_timeout == 10_000  # type: ignore[attr-defined]


def test_each_variable_reaches_its_setting() -> None:
    found, problems = options(
        HOST="127.0.0.1",
        PORT="8080",
        WEB_CONCURRENCY="3",
        WEB_THREADS="6",
        GRACEFUL_TIMEOUT_SECONDS="45",
        HTTP_HEADER_READ_TIMEOUT_SECONDS="5",
        HTTP_KEEP_ALIVE="off",
        WEB_BACKPRESSURE="64",
        LOG_LEVEL="WARNING",
    )
    assert problems == []
    assert (found["address"], found["port"], found["workers"], found["blocking_threads"]) == (
        "127.0.0.1",
        8080,
        3,
        6,
    )
    assert found["workers_kill_timeout"] == 45
    assert found["backpressure"] == 64
    http1 = found["http1_settings"]
    assert (http1.header_read_timeout, http1.keep_alive) == (5000, False)  # type: ignore[attr-defined]
    assert found["log_level"] == "warning"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY: must be between 1 and 256, got 0"),
        ({"PORT": "http"}, "PORT: expected a whole number, got 'http'"),
        (
            {"HTTP_HEADER_READ_TIMEOUT_SECONDS": "61"},
            "HTTP_HEADER_READ_TIMEOUT_SECONDS: must be between 1 and 60",
        ),
        (
            {"LOG_LEVEL": "loud"},
            "LOG_LEVEL: must be one of debug, info, warning, error, critical, got 'loud'",
        ),
        ({"HTTP_KEEP_ALIVE": "maybe"}, "HTTP_KEEP_ALIVE: expected on or off, got 'maybe'"),
    ],
)
def test_bad_values_are_named(env: dict[str, str], problem: str) -> None:
    _, problems = options(**env)
    assert any(found.startswith(problem) for found in problems), problems


def test_a_drain_shorter_than_a_workers_slowest_request_and_flush_is_refused() -> None:
    settings = load_settings({**DB, "STORAGE_READ_TIMEOUT_SECONDS": "20"})
    assert storage_call_budget_seconds(settings) == 3 * (3 + 20 + 1)
    # The pool's wait, the statement timeout, the storage calls, the records' exit flush.
    assert drain_budget_seconds(settings) == 5 + 5 + 72 + 5
    assert drain_budget_seconds(load_settings(DB)) < 45  # the defaults fit the default drain
    _, problems = options(STORAGE_READ_TIMEOUT_SECONDS="20")
    assert problems == [
        "GRACEFUL_TIMEOUT_SECONDS (45s) must exceed what a worker may need to finish: its slowest request"
        " (DB_POOL_TIMEOUT_SECONDS + DB_STATEMENT_TIMEOUT_MS + STORAGE_MAX_ATTEMPTS x"
        " (STORAGE_CONNECT_TIMEOUT_SECONDS + STORAGE_READ_TIMEOUT_SECONDS + 1s backoff)) and"
        " 5s to write its presign records = 87s"
    ]
    _, problems = options(STORAGE_READ_TIMEOUT_SECONDS="20", GRACEFUL_TIMEOUT_SECONDS="90")
    assert problems == []

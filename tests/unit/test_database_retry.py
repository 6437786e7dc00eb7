"""The retry around each unit of database work, with connections that fail on cue."""

from __future__ import annotations

import psycopg2
import pytest

from app.db import DatabaseUnavailable, _run_with_retry


class _DeadCursor:
    def __init__(self, conn: _DyingConnection):
        self._conn = conn

    def __enter__(self) -> _DeadCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, query: str) -> None:
        # What psycopg2 raises when the server vanished under an idle connection.
        self._conn.closed = 2
        raise psycopg2.DatabaseError("server closed the connection unexpectedly")


class _DyingConnection:
    closed = 0

    def cursor(self) -> _DeadCursor:
        return _DeadCursor(self)


def test_any_error_on_a_connection_that_closed_is_a_broken_connection() -> None:
    given_back: list[bool] = []
    with pytest.raises(DatabaseUnavailable):
        _run_with_retry(
            lambda cur: cur.execute("SELECT 1"),
            _DyingConnection,  # type: ignore[arg-type]
            lambda _conn, broken: given_back.append(broken),
        )
    # Tried twice, each connection handed back as broken (closed, not pooled).
    assert given_back == [True, True]


class _RefusingCursor(_DeadCursor):
    def execute(self, query: str) -> None:
        raise psycopg2.DataError("invalid input syntax")


class _HealthyConnection:
    closed = 0

    def cursor(self) -> _RefusingCursor:
        return _RefusingCursor(self)  # type: ignore[arg-type]


def test_a_statement_error_on_a_healthy_connection_is_not_retried() -> None:
    given_back: list[bool] = []
    with pytest.raises(psycopg2.DataError):
        _run_with_retry(
            lambda cur: cur.execute("SELECT 1"),
            _HealthyConnection,  # type: ignore[arg-type]
            lambda _conn, broken: given_back.append(broken),
        )
    assert given_back == []

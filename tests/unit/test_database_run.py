"""``Database.run``, the one way SQL runs: what it borrows is back before it returns, whatever happened."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from app.db import Database, DatabaseUnavailable

SIZE = 3


class FakeConnection:
    """Just what the pool and the retry use of a psycopg2 connection; each statement follows ``plan``."""

    def __init__(self, plan: list[str]):
        self.plan = plan
        self.closed = 0
        self._read, self._write = os.pipe()  # nothing to read: the pool's poll says "alive"

    def fileno(self) -> int:
        return self._read

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def get_transaction_status(self) -> int:
        return psycopg2.extensions.TRANSACTION_STATUS_IDLE

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = 1
            os.close(self._read)
            os.close(self._write)


class FakeCursor:
    def __init__(self, conn: FakeConnection):
        self._conn = conn

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str) -> None:
        step = self._conn.plan.pop(0) if self._conn.plan else "ok"
        if step == "dies":
            self._conn.closed = 2
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        if step == "refuses":
            raise psycopg2.DataError("invalid input syntax")


@pytest.fixture
def plans() -> list[list[str]]:
    """What each new connection will do, in the order they are opened."""
    return []


@pytest.fixture
def database(plans: list[list[str]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    db = Database(
        "postgresql://unused/x", size=SIZE, pool_timeout=0.1, connect_timeout=1, statement_timeout_ms=1
    )
    opened: list[FakeConnection] = []

    def connect() -> Any:
        opened.append(FakeConnection(plans.pop(0) if plans else []))
        return opened[-1]

    monkeypatch.setattr(db, "_connect", connect)
    db.opened = opened  # type: ignore[attr-defined]
    yield db
    db.close()


def select(cur: Any) -> str:
    cur.execute("SELECT 1")
    return "done"


def all_slots_free(db: Database) -> bool:
    taken = [db.borrow() for _ in range(SIZE)]  # raises DatabaseUnavailable if one is still held
    for conn in taken:
        db.give_back(conn)
    return True


def test_the_connection_is_back_in_the_pool_before_run_returns_and_is_reused(database: Database) -> None:
    seen_idle: list[int] = []

    def work(cur: Any) -> str:
        seen_idle.append(len(database._idle))
        return select(cur)

    assert database.run(work) == "done"
    assert database.run(work) == "done"
    assert seen_idle == [0, 0]  # lent out while the work ran ...
    assert len(database._idle) == 1 and len(database.opened) == 1  # type: ignore[attr-defined]
    assert all_slots_free(database)


def test_a_connection_that_dies_mid_statement_is_closed_and_the_work_retried_on_a_fresh_one(
    database: Database, plans: list[list[str]]
) -> None:
    plans.append(["dies"])
    assert database.run(select) == "done"
    first, second = database.opened  # type: ignore[attr-defined]
    assert first.closed and not second.closed
    assert database._idle == [second]
    assert all_slots_free(database)


def test_a_database_that_stays_down_is_503_and_holds_nothing(
    database: Database, plans: list[list[str]]
) -> None:
    plans += [["dies"], ["dies"]]
    with pytest.raises(DatabaseUnavailable, match="database unavailable, try again shortly"):
        database.run(select)
    assert database._idle == []
    assert all_slots_free(database)


def test_a_statements_own_error_reaches_the_caller_and_the_healthy_connection_is_kept(
    database: Database, plans: list[list[str]]
) -> None:
    plans.append(["refuses"])
    with pytest.raises(psycopg2.DataError):
        database.run(select)
    assert len(database._idle) == 1 and len(database.opened) == 1  # type: ignore[attr-defined]
    assert all_slots_free(database)


def test_an_error_of_the_work_itself_still_gives_the_connection_back(database: Database) -> None:
    def broken(cur: Any) -> None:
        raise ValueError("a bug in the caller")

    with pytest.raises(ValueError, match="a bug in the caller"):
        database.run(broken)
    assert len(database._idle) == 1
    assert all_slots_free(database)

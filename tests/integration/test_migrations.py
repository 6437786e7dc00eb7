"""Migrations: applied once, in order, under a lock; a guide-built database is upgraded in place."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
from flask import Flask

from app.migrations import apply_migrations, discover, pending_migrations

pytestmark = pytest.mark.integration

GUIDE_S3_TABLE = """
CREATE TABLE IF NOT EXISTS s3_files (
    id SERIAL PRIMARY KEY,
    object_key TEXT NOT NULL UNIQUE, -- Key (path/filename) in S3
    file_url TEXT NOT NULL,          -- Publicly accessible URL (if object is public)
    user_id TEXT NOT NULL,           -- User associated with the file
    upload_timestamp TIMESTAMPTZ DEFAULT NOW()
);
INSERT INTO s3_files (object_key, file_url, user_id)
VALUES ('old-key.txt', 'https://bucket.s3.us-east-1.amazonaws.com/old-key.txt', 'user_123');
"""


def schema(dsn: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(
            """
            SELECT table_name, column_name, data_type, is_nullable, column_default
            FROM information_schema.columns WHERE table_schema = 'public'
            ORDER BY table_name, column_name
            """
        )
        columns = cur.fetchall()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1")
        indexes = cur.fetchall()
    conn.close()
    return columns + indexes


def test_migrations_apply_in_order_and_are_recorded(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    applied = apply_migrations(dsn)
    assert applied == [m.name for m in discover()]
    assert applied[0] == "001_guide_tables"
    assert pending_migrations(dsn) == []


def test_migrations_applied_twice_leave_the_schema_unchanged(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    apply_migrations(dsn)
    before = schema(dsn)
    assert apply_migrations(dsn) == []
    assert schema(dsn) == before


def test_migrations_upgrade_a_database_built_by_a_guide(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute(GUIDE_S3_TABLE)
    conn.close()

    apply_migrations(dsn)

    conn = psycopg2.connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT object_key, user_id, content_type, size_bytes, etag FROM s3_files")
        assert cur.fetchall() == [("old-key.txt", "user_123", None, None, None)]
    conn.close()


def test_migrations_from_two_processes_at_once_apply_once(make_database: Callable[[], str]) -> None:
    dsn = make_database()
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        try:
            results.append(apply_migrations(dsn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r) for r in results) == [0, 0, len(discover())]


def test_db_upgrade_command(make_app: Callable[..., Flask], make_database: Callable[[], str]) -> None:
    dsn = make_database()
    runner = make_app(DATABASE_URL=dsn).test_cli_runner()
    status = runner.invoke(args=["db", "status"])
    assert status.exit_code == 1
    assert "pending 001_guide_tables" in status.output
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "applied 003_pending_uploads" in result.output
    again = runner.invoke(args=["db", "upgrade"])
    assert "0 migration(s) applied" in again.output
    assert runner.invoke(args=["db", "status"]).exit_code == 0

"""All SQL the service runs, as named constants, behind one repository class.

The four file tables are the guides' own (``s3_files``, ``r2_files``,
``b2_files`` keyed by ``object_key``; ``azure_files`` keyed by ``blob_name``).
Their names come from a fixed table below, never from input.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from psycopg2.extensions import cursor as Cursor

T = TypeVar("T")


class QueryCursor(Protocol):
    """What the repository needs of a cursor."""

    def execute(self, query: str, params: dict[str, Any], /) -> Any: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...


Transaction = Callable[[Callable[[Cursor], Any]], Any]


@dataclass(frozen=True)
class PendingUpload:
    """A key handed out by presign, and to whom."""

    object_key: str
    provider: str
    user_id: str
    file_name: str
    content_type: str
    declared_size: int | None
    created_at: datetime
    expires_at: datetime
    saved_at: datetime | None


@dataclass(frozen=True)
class StoredFile:
    """One row of a provider's files table."""

    id: int
    provider: str
    object_key: str
    file_url: str | None
    user_id: str
    file_name: str | None
    content_type: str | None
    size_bytes: int | None
    etag: str | None
    uploaded_at: datetime | None


@dataclass(frozen=True)
class NewFile:
    """What save-metadata learned and is about to record."""

    object_key: str
    file_url: str
    user_id: str
    file_name: str
    content_type: str | None
    size_bytes: int
    etag: str | None


# Presign records, written behind the response in batches (app/uploads/recorder.py):
# the key's own tags prove ownership at save, so a presign never waits for this.
# The batch travels as one JSON array of arrays: json.dumps is C, where
# adapting eight Python lists for unnest() cost ~4x as much per row.
# ``created_at`` is the presign's own time (epoch seconds), whenever the batch lands.
INSERT_PENDING_BATCH = """
    INSERT INTO pending_uploads
        (object_key, provider, user_id, file_name, content_type, declared_size, created_at, expires_at)
    SELECT r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::bigint,
           to_timestamp((r->>6)::float8), to_timestamp((r->>7)::float8)
    FROM json_array_elements(%(records)s::json) AS r
    ON CONFLICT (object_key) DO NOTHING
"""

SELECT_SECRET = "SELECT secret FROM service_secrets WHERE name = %(name)s"  # noqa: S105 - a query

SELECT_PENDING = """
    SELECT object_key, provider, user_id, file_name, content_type, declared_size,
           created_at, expires_at, saved_at
    FROM pending_uploads
    WHERE object_key = %(object_key)s
"""

# Row-level security (optional): names the user whose rows this transaction
# may see; "true" makes it last only until the transaction ends (SET LOCAL).
# It is sent in the same string as each statement, so it shares its transaction.
SET_ACTING_USER = "SELECT set_config('app.user_id', %(acting_user_id)s, true);"

_FILE_COLUMNS = "id, {key}, file_url, user_id, file_name, content_type, size_bytes, etag, upload_timestamp"

# Insert the row and mark its presign record saved, atomically, in one round
# trip; nothing comes back when the key already had a row. The record is
# created here if its batch has not landed yet, so the late batch finds it
# and a sweep never takes a saved upload for an abandoned one.
_INSERT_FILE = """
    WITH inserted AS (
        INSERT INTO {table} ({key}, file_url, user_id, file_name, content_type, size_bytes, etag)
        VALUES (%(object_key)s, %(file_url)s, %(user_id)s, %(file_name)s, %(content_type)s,
                %(size_bytes)s, %(etag)s)
        ON CONFLICT ({key}) DO NOTHING
        RETURNING {columns}
    ), marked AS (
        INSERT INTO pending_uploads
            (object_key, provider, user_id, file_name, content_type, declared_size, expires_at, saved_at)
        SELECT %(object_key)s, %(provider)s, %(user_id)s, %(file_name)s, coalesce(%(content_type)s, ''),
               %(size_bytes)s, now(), now()
        FROM inserted
        ON CONFLICT (object_key) DO UPDATE SET saved_at = now() WHERE pending_uploads.saved_at IS NULL
    )
    SELECT * FROM inserted
"""

_SELECT_FILE_BY_KEY = """
    SELECT {columns}
    FROM {table}
    WHERE {key} = %(object_key)s
"""

# provider -> (table, key column), straight from the guides.
FILE_TABLES: dict[str, tuple[str, str]] = {
    "s3": ("s3_files", "object_key"),
    "r2": ("r2_files", "object_key"),
    "b2": ("b2_files", "object_key"),
    "azure": ("azure_files", "blob_name"),
}


def _file_queries(table: str, key: str) -> dict[str, str]:
    columns = _FILE_COLUMNS.format(key=key)
    return {
        "insert": _INSERT_FILE.format(table=table, key=key, columns=columns),
        "select_by_key": _SELECT_FILE_BY_KEY.format(table=table, key=key, columns=columns),
    }


FILE_QUERIES: dict[str, dict[str, str]] = {
    provider: _file_queries(table, key) for provider, (table, key) in FILE_TABLES.items()
}


def _execute(query: str, params: dict[str, Any], cur: QueryCursor) -> None:
    cur.execute(query, params)


def _stored_file(provider: str, row: tuple[Any, ...]) -> StoredFile:
    return StoredFile(row[0], provider, *row[1:])


class _ActingUserCursor:
    """A cursor that names the acting user in front of every statement (row-level security)."""

    def __init__(self, cursor: Cursor, user_id: str):
        self._cursor = cursor
        self._user_id = user_id

    def execute(self, query: str, params: dict[str, Any]) -> None:
        self._cursor.execute(SET_ACTING_USER + query, {**params, "acting_user_id": self._user_id})

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cursor.fetchone()


class FileRepository:
    """Reads and writes upload records; each call is one transaction on behalf of one user."""

    def __init__(self, transaction: Transaction, *, row_level_security: bool = False):
        self._transaction = transaction
        self._row_level_security = row_level_security

    def _run(self, user_id: str, work: Callable[[QueryCursor], T]) -> T:
        if not self._row_level_security:
            result: T = self._transaction(work)
            return result
        scoped_result: T = self._transaction(lambda cur: work(_ActingUserCursor(cur, user_id)))
        return scoped_result

    def record_pending_batch(self, records: Sequence[PendingUpload]) -> None:
        """Remember who each key was issued to; keys already recorded are left alone."""
        by_user: dict[str, list[PendingUpload]] = {}
        if self._row_level_security:
            # Each user's rows are written in a transaction that names that user.
            for record in records:
                by_user.setdefault(record.user_id, []).append(record)
        else:
            by_user[""] = list(records)
        for user_id, batch in by_user.items():
            records_json = json.dumps(
                [
                    (
                        r.object_key,
                        r.provider,
                        r.user_id,
                        r.file_name,
                        r.content_type,
                        r.declared_size,
                        r.created_at.timestamp(),
                        r.expires_at.timestamp(),
                    )
                    for r in batch
                ]
            )
            params = {"records": records_json}
            self._run(user_id, functools.partial(_execute, INSERT_PENDING_BATCH, params))

    def load_secret(self, name: str) -> bytes | None:
        """Return one of the service's own secrets (``service_secrets``), or None if missing."""

        def work(cur: QueryCursor) -> bytes | None:
            cur.execute(SELECT_SECRET, {"name": name})
            row = cur.fetchone()
            return bytes(row[0]) if row else None

        return self._run("", work)

    def find_pending(self, object_key: str, user_id: str) -> PendingUpload | None:
        """Return the record of the presign that issued ``object_key`` (to anyone, unless RLS hides it)."""

        def work(cur: QueryCursor) -> PendingUpload | None:
            cur.execute(SELECT_PENDING, {"object_key": object_key})
            row = cur.fetchone()
            return PendingUpload(*row) if row else None

        return self._run(user_id, work)

    def find_file(self, provider: str, object_key: str, user_id: str) -> StoredFile | None:
        """Return the saved row for ``object_key`` (whoever owns it, unless RLS hides it)."""

        def work(cur: QueryCursor) -> StoredFile | None:
            cur.execute(FILE_QUERIES[provider]["select_by_key"], {"object_key": object_key})
            row = cur.fetchone()
            return _stored_file(provider, row) if row else None

        return self._run(user_id, work)

    def save_file(self, provider: str, new: NewFile) -> tuple[StoredFile | None, bool]:
        """Insert the row unless the key has one; return the row and whether it is new.

        Racing saves of one key meet at the unique constraint: one inserts,
        the others read back the winner's row. The row is None when the key
        belongs to a row this user may not see (row-level security).
        """
        queries = FILE_QUERIES[provider]
        params = {
            "object_key": new.object_key,
            "provider": provider,
            "file_url": new.file_url,
            "user_id": new.user_id,
            "file_name": new.file_name,
            "content_type": new.content_type,
            "size_bytes": new.size_bytes,
            "etag": new.etag,
        }

        def work(cur: QueryCursor) -> tuple[StoredFile | None, bool]:
            cur.execute(queries["insert"], params)
            row = cur.fetchone()
            if row is not None:
                return _stored_file(provider, row), True
            # A new statement, so a new snapshot: it sees a racing save's row.
            cur.execute(queries["select_by_key"], params)
            existing = cur.fetchone()
            return (_stored_file(provider, existing) if existing else None), False

        return self._run(new.user_id, work)

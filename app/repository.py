"""All SQL the service runs, as named constants, behind one repository class.

The four file tables are the guides' own (``s3_files``, ``r2_files``,
``b2_files`` keyed by ``object_key``; ``azure_files`` keyed by ``blob_name``).
Their names come from a fixed table below, never from input.
"""

from __future__ import annotations

from collections.abc import Callable
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


# Committed durably (synchronous_commit stays on): a record lost in a crash
# would leave an uploaded file its owner can no longer save; the restart test
# in tests/test_database_restart.py crashes the server to prove it.
INSERT_PENDING = """
    INSERT INTO pending_uploads
        (object_key, provider, user_id, file_name, content_type, declared_size, expires_at)
    VALUES
        (%(object_key)s, %(provider)s, %(user_id)s, %(file_name)s, %(content_type)s,
         %(declared_size)s, %(expires_at)s)
    ON CONFLICT (object_key) DO NOTHING
"""

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

# Insert the row and mark the pending upload saved, atomically, in one round
# trip; nothing comes back when the key already had a row.
_INSERT_FILE = """
    WITH inserted AS (
        INSERT INTO {table} ({key}, file_url, user_id, file_name, content_type, size_bytes, etag)
        VALUES (%(object_key)s, %(file_url)s, %(user_id)s, %(file_name)s, %(content_type)s,
                %(size_bytes)s, %(etag)s)
        ON CONFLICT ({key}) DO NOTHING
        RETURNING {columns}
    ), marked AS (
        UPDATE pending_uploads SET saved_at = now()
        WHERE object_key = %(object_key)s AND saved_at IS NULL AND EXISTS (SELECT 1 FROM inserted)
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

    def record_pending(
        self,
        *,
        object_key: str,
        provider: str,
        user_id: str,
        file_name: str,
        content_type: str,
        declared_size: int | None,
        expires_at: datetime,
    ) -> None:
        """Remember that ``object_key`` was issued to ``user_id``."""
        params = {
            "object_key": object_key,
            "provider": provider,
            "user_id": user_id,
            "file_name": file_name,
            "content_type": content_type,
            "declared_size": declared_size,
            "expires_at": expires_at,
        }
        self._run(user_id, lambda cur: cur.execute(INSERT_PENDING, params))

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

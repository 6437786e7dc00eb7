"""The request path's SQL: presign records, saved files, and one user's reads and deletes.

Each ``FileRepository`` call is one transaction on behalf of one user
(``Database.run``: a connection borrowed for the call and given back).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from psycopg2.extensions import cursor as Cursor

from .tables import FILE_TABLES, QueryCursor, Transaction

T = TypeVar("T")


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
    #: what the bytes are, as save-metadata identified them (None: not named)
    detected_content_type: str | None = None
    #: the whole file's digests, base64, as declared at presign and checked by the storage
    checksum_sha256: str | None = None
    content_md5: str | None = None


@dataclass(frozen=True)
class KeyState:
    """How far an issued key's upload has gone."""

    #: it has a row: the object is final
    saved: bool
    #: a sweep or a refused save claimed it: its object is (being) deleted
    cleaned_up: bool


class AbandonedUpload(Exception):
    """The key was swept as an abandoned upload before its save landed; its object is gone."""


class FileDeleted(Exception):
    """The key was saved once and its file deleted since: its upload is over for good."""


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
    detected_content_type: str | None = None
    checksum_sha256: str | None = None
    content_md5: str | None = None


# Presign records, written behind the response in batches (app/uploads/recorder.py):
# the key's own tags prove ownership at save, so a presign never waits for this.
# The batch travels as one JSON array of arrays: json.dumps is C, where
# adapting eight Python lists for unnest() cost ~4x as much per row.
# ``created_at`` is the presign's own time (epoch seconds), whenever the batch lands.
# A key recorded again (a multipart step signed later) only pushes its expiry
# out, so a sweep never takes a key while any URL signed for it still works;
# a saved or claimed record is left as it is.
INSERT_PENDING_BATCH = """
    INSERT INTO pending_uploads AS p
        (object_key, provider, user_id, file_name, content_type, declared_size, created_at, expires_at)
    SELECT r->>0, r->>1, r->>2, r->>3, r->>4, (r->>5)::bigint,
           to_timestamp((r->>6)::float8), to_timestamp((r->>7)::float8)
    FROM json_array_elements(%(records)s::json) AS r
    ON CONFLICT (object_key) DO UPDATE SET expires_at = EXCLUDED.expires_at
        WHERE p.expires_at < EXCLUDED.expires_at AND p.saved_at IS NULL AND p.sweep_claimed_at IS NULL
          AND p.user_id = EXCLUDED.user_id
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

_FILE_COLUMNS = (
    "id, {key}, file_url, user_id, file_name, content_type, size_bytes, etag, upload_timestamp,"
    " detected_content_type, checksum_sha256, content_md5"
)

# Mark the presign record saved and insert the row, atomically, in one round
# trip; nothing comes back when the key already had a row. The record is
# created here if its batch has not landed yet, so the late batch finds it
# saved. The upsert takes the record's row lock, which orders this save
# against a sweep's claim (SWEEP_CLAIM): once a sweeper has claimed the key
# nothing is inserted (the object is being deleted), and once this save has
# marked the record no sweeper claims it.
_INSERT_FILE = """
    WITH marked AS (
        INSERT INTO pending_uploads
            (object_key, provider, user_id, file_name, content_type, declared_size, expires_at, saved_at)
        VALUES (%(object_key)s, %(provider)s, %(user_id)s, %(file_name)s, coalesce(%(content_type)s, ''),
                %(size_bytes)s, now(), now())
        ON CONFLICT (object_key) DO UPDATE SET saved_at = now()
            WHERE pending_uploads.sweep_claimed_at IS NULL AND pending_uploads.user_id = EXCLUDED.user_id
              -- Saved once already: a racing save's row is read back below; if the row is
              -- gone, its file was deleted and the key is over (FileDeleted).
              AND pending_uploads.saved_at IS NULL
        RETURNING object_key
    )
    INSERT INTO {table} ({key}, file_url, user_id, file_name, content_type, size_bytes, etag,
                         detected_content_type, checksum_sha256, content_md5)
    SELECT %(object_key)s, %(file_url)s, %(user_id)s, %(file_name)s, %(content_type)s,
           %(size_bytes)s, %(etag)s, %(detected_content_type)s, %(checksum_sha256)s, %(content_md5)s
    FROM marked
    ON CONFLICT ({key}) DO NOTHING
    RETURNING {columns}
"""

# Claim a key whose object save-metadata is about to delete (it broke the
# rules), as a sweep claims one: taken under the record's row lock, so a racing
# save either marked the record first (nothing is claimed, and its row is kept)
# or finds the claim and inserts nothing (_INSERT_FILE). The record is created
# when the presign's has not landed yet.
CLAIM_REFUSED = """
    INSERT INTO pending_uploads AS p
        (object_key, provider, user_id, file_name, content_type, expires_at, sweep_claimed_at)
    VALUES (%(object_key)s, %(provider)s, %(user_id)s, '', '', now(), now())
    ON CONFLICT (object_key) DO UPDATE SET sweep_claimed_at = coalesce(p.sweep_claimed_at, now())
        WHERE p.saved_at IS NULL AND p.user_id = EXCLUDED.user_id
    RETURNING object_key
"""

SELECT_SWEPT = """
    SELECT sweep_claimed_at IS NOT NULL, saved_at IS NOT NULL AND user_id = %(user_id)s
    FROM pending_uploads
    WHERE object_key = %(object_key)s
"""

# Whether a key's upload is over: saved (its record says so, which outlives a
# deleted row; or it has a row, for rows older than records), or claimed by a
# sweep or a refused save (its object deleted). One round trip, before any
# more signing for the key (multipart steps). A claimed record is forgotten
# some time after its sweep (FORGET_SWEPT); by then every URL signed for the
# key has expired.
_SELECT_KEY_STATE = """
    SELECT EXISTS (SELECT 1 FROM {table} WHERE {key} = %(object_key)s)
               OR EXISTS (SELECT 1 FROM pending_uploads
                          WHERE object_key = %(object_key)s AND saved_at IS NOT NULL),
           EXISTS (SELECT 1 FROM pending_uploads
                   WHERE object_key = %(object_key)s AND sweep_claimed_at IS NOT NULL)
"""

_SELECT_FILE_BY_KEY = """
    SELECT {columns}
    FROM {table}
    WHERE {key} = %(object_key)s
"""

# One page of a user's files, newest first: a range scan of the (user_id, id)
# index (migration 005) whatever the table's size. ``before`` is the last id
# of the previous page (keyset pagination; no OFFSET).
_SELECT_PAGE = """
    SELECT {columns}
    FROM {table}
    WHERE user_id = %(user_id)s AND id < %(before)s
    ORDER BY id DESC
    LIMIT %(limit)s
"""

_SELECT_FILE_BY_ID = """
    SELECT {columns}
    FROM {table}
    WHERE id = %(id)s AND user_id = %(user_id)s
"""

# Delete the row and remember the deletion, so deleting again is told apart
# from an id that was never this user's.
_DELETE_FILE = """
    WITH gone AS (
        DELETE FROM {table}
        WHERE id = %(id)s AND user_id = %(user_id)s
        RETURNING id, {key}, user_id
    )
    INSERT INTO deleted_files (provider, file_id, user_id, object_key)
    SELECT %(provider)s, id, user_id, {key} FROM gone
    ON CONFLICT (provider, file_id) DO NOTHING
"""

SELECT_DELETED = """
    SELECT 1 FROM deleted_files
    WHERE provider = %(provider)s AND file_id = %(id)s AND user_id = %(user_id)s
"""


def _file_queries(table: str, key: str) -> dict[str, str]:
    columns = _FILE_COLUMNS.format(key=key)
    return {
        name: query.format(table=table, key=key, columns=columns)
        for name, query in (
            ("insert", _INSERT_FILE),
            ("select_by_key", _SELECT_FILE_BY_KEY),
            ("key_state", _SELECT_KEY_STATE),
            ("select_page", _SELECT_PAGE),
            ("select_by_id", _SELECT_FILE_BY_ID),
            ("delete", _DELETE_FILE),
        )
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

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cursor.fetchall()


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
        """Remember who each key was issued to; a key already recorded only gets the later expiry."""
        # One row per key per statement (ON CONFLICT DO UPDATE may touch a row once):
        # the first record of a key, with the latest expiry any of them carries.
        merged: dict[str, PendingUpload] = {}
        for record in records:
            first = merged.get(record.object_key)
            if first is None:
                merged[record.object_key] = record
            elif record.expires_at > first.expires_at:
                merged[record.object_key] = dataclasses.replace(first, expires_at=record.expires_at)
        by_user: dict[str, list[PendingUpload]] = {}
        if self._row_level_security:
            # Each user's rows are written in a transaction that names that user.
            for record in merged.values():
                by_user.setdefault(record.user_id, []).append(record)
        else:
            by_user[""] = list(merged.values())
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

    def key_state(self, provider: str, object_key: str, user_id: str) -> KeyState:
        """Whether ``object_key`` was saved, or cleaned up (swept, or refused at save)."""

        def work(cur: QueryCursor) -> KeyState:
            cur.execute(FILE_QUERIES[provider]["key_state"], {"object_key": object_key})
            row = cur.fetchone()
            return KeyState(saved=bool(row and row[0]), cleaned_up=bool(row and row[1]))

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
            "detected_content_type": new.detected_content_type,
            "checksum_sha256": new.checksum_sha256,
            "content_md5": new.content_md5,
        }

        def work(cur: QueryCursor) -> tuple[StoredFile | None, bool]:
            cur.execute(queries["insert"], params)
            row = cur.fetchone()
            if row is not None:
                return _stored_file(provider, row), True
            # A new statement, so a new snapshot: it sees a racing save's row.
            cur.execute(queries["select_by_key"], params)
            existing = cur.fetchone()
            if existing is not None:
                return _stored_file(provider, existing), False
            cur.execute(SELECT_SWEPT, params)
            state = cur.fetchone()
            if state is not None and state[0]:
                raise AbandonedUpload(new.object_key)
            if state is not None and state[1]:
                raise FileDeleted(new.object_key)
            return None, False

        return self._run(new.user_id, work)

    def claim_refused(self, provider: str, object_key: str, user_id: str) -> bool:
        """Claim a key whose object is about to be deleted; False when a save recorded it first."""
        params = {"object_key": object_key, "provider": provider, "user_id": user_id}

        def work(cur: QueryCursor) -> bool:
            cur.execute(CLAIM_REFUSED, params)
            return cur.fetchone() is not None

        return self._run(user_id, work)

    def list_files(self, provider: str, user_id: str, before: int, limit: int) -> list[StoredFile]:
        """Return up to ``limit`` of the user's files with ids below ``before``, newest first."""
        params = {"user_id": user_id, "before": before, "limit": limit}

        def work(cur: QueryCursor) -> list[StoredFile]:
            cur.execute(FILE_QUERIES[provider]["select_page"], params)
            return [_stored_file(provider, row) for row in cur.fetchall()]

        return self._run(user_id, work)

    def get_file(self, provider: str, user_id: str, file_id: int) -> StoredFile | None:
        """Return the user's file ``file_id``, or None (also when it is another user's)."""
        params = {"user_id": user_id, "id": file_id}

        def work(cur: QueryCursor) -> StoredFile | None:
            cur.execute(FILE_QUERIES[provider]["select_by_id"], params)
            row = cur.fetchone()
            return _stored_file(provider, row) if row else None

        return self._run(user_id, work)

    def delete_file(self, provider: str, user_id: str, file_id: int) -> None:
        """Delete the user's row ``file_id`` and remember that it was deleted."""
        params = {"user_id": user_id, "id": file_id, "provider": provider}
        self._run(user_id, functools.partial(_execute, FILE_QUERIES[provider]["delete"], params))

    def was_deleted(self, provider: str, user_id: str, file_id: int) -> bool:
        """Whether this user deleted ``file_id`` earlier."""
        params = {"user_id": user_id, "id": file_id, "provider": provider}

        def work(cur: QueryCursor) -> bool:
            cur.execute(SELECT_DELETED, params)
            return cur.fetchone() is not None

        return self._run(user_id, work)

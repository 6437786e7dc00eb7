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

from ..config import QuotaLimits
from .tables import FILE_COLUMNS, FILE_TABLES, QueryCursor, Transaction

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
class Usage:
    """What one user holds: stored files and their bytes, and what unsaved presigns reserve."""

    bytes: int = 0
    files: int = 0
    unsaved_bytes: int = 0
    unsaved_uploads: int = 0


class QuotaExceeded(Exception):
    """The change would take its user over one of their limits; nothing was written."""

    def __init__(self, usage: Usage, limits: QuotaLimits):
        super().__init__("quota exceeded")
        self.usage = usage
        self.limits = limits


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


# Mark the presign record saved and insert the row, atomically, in one round
# trip; nothing comes back when the key already had a row. The record is
# created here if its batch has not landed yet, so the late batch finds it
# saved. The upsert takes the record's row lock, which orders this save
# against a sweep's claim (SWEEP_CLAIM): once a sweeper has claimed the key
# nothing is inserted (the object is being deleted), and once this save has
# marked the record no sweeper claims it. The same statement counts the file
# in its user's usage, and, with webhooks on, writes its event (the outbox):
# both commit with the row or not at all. With quotas enforced, it first takes
# its user's lock (so the check below sees every earlier save and presign of
# theirs) and inserts nothing when the file would take them over a limit.
_QUOTA_LOCK = "SELECT pg_advisory_xact_lock(%(quota_lock_class)s, hashtext(%(user_id)s));"
QUOTA_LOCK_CLASS = 4_242_019
_STORED_LIMITS = """
    limits AS (
        SELECT coalesce(q.max_bytes, %(quota_bytes)s::bigint) AS max_bytes,
               coalesce(q.max_files, %(quota_files)s::bigint) AS max_files
        FROM (SELECT 1) AS one LEFT JOIN user_quotas AS q ON q.user_id = %(user_id)s
    ),
    used AS (
        SELECT coalesce((SELECT bytes FROM user_usage WHERE user_id = %(user_id)s), 0) AS bytes,
               coalesce((SELECT files FROM user_usage WHERE user_id = %(user_id)s), 0) AS files
    ),
    allowed AS (
        SELECT 1 FROM limits, used
        WHERE (max_bytes IS NULL OR used.bytes + %(size_bytes)s <= max_bytes)
          AND (max_files IS NULL OR used.files + 1 <= max_files)
    ),"""
_MARK_AND_INSERT = """
    marked AS (
        INSERT INTO pending_uploads
            (object_key, provider, user_id, file_name, content_type, declared_size, expires_at, saved_at)
        SELECT %(object_key)s, %(provider)s, %(user_id)s, %(file_name)s, coalesce(%(content_type)s, ''),
               %(size_bytes)s, now(), now() {from_allowed}
        ON CONFLICT (object_key) DO UPDATE SET saved_at = now()
            WHERE pending_uploads.sweep_claimed_at IS NULL AND pending_uploads.user_id = EXCLUDED.user_id
              -- Saved once already: a racing save's row is read back below; if the row is
              -- gone, its file was deleted and the key is over (FileDeleted).
              AND pending_uploads.saved_at IS NULL
        RETURNING object_key
    ),
    saved AS (
        INSERT INTO {{table}} ({{key}}, file_url, user_id, file_name, content_type, size_bytes, etag,
                             detected_content_type, checksum_sha256, content_md5)
        SELECT %(object_key)s, %(file_url)s, %(user_id)s, %(file_name)s, %(content_type)s,
               %(size_bytes)s, %(etag)s, %(detected_content_type)s, %(checksum_sha256)s, %(content_md5)s
        FROM marked
        ON CONFLICT ({{key}}) DO NOTHING
        RETURNING {{columns}}
    ),
    counted AS (
        INSERT INTO user_usage AS u (user_id, bytes, files)
        SELECT user_id, coalesce(size_bytes, 0), 1 FROM saved
        ON CONFLICT (user_id) DO UPDATE SET bytes = u.bytes + EXCLUDED.bytes, files = u.files + 1
    ){announce}
    {final}
"""
# The event of a change, written by the statement that makes it: the row as it was.
_ANNOUNCE_ROW = """,
    announced AS (
        INSERT INTO events (type, user_id, provider, object_key, data)
        SELECT '{event}', user_id, %(provider)s, {{key}},
               jsonb_build_object('row', jsonb_build_array({{columns}}))
        FROM {source}
    )"""


# Under quotas the save answers one row whatever happened: the row saved (or NULLs), whether
# the limits allowed it, and the usage and limits it was judged by (under the user's lock).
_ANSWER_SAVED = "SELECT {columns} FROM saved"
_ANSWER_UNDER_QUOTAS = """SELECT {columns},
           judged.ok, used.bytes, used.files, limits.max_bytes, limits.max_files
    FROM used CROSS JOIN limits CROSS JOIN (SELECT EXISTS (SELECT 1 FROM allowed) AS ok) AS judged
    LEFT JOIN saved ON true"""


def _insert_file_query(*, events: bool, quotas: bool) -> str:
    """The save statement (a template of table, key and columns) with what the settings turn on."""
    return (
        (_QUOTA_LOCK if quotas else "")
        + "\n    WITH"
        + (_STORED_LIMITS if quotas else "")
        + _MARK_AND_INSERT.format(
            from_allowed="FROM allowed" if quotas else "",
            announce=_ANNOUNCE_ROW.format(event="file.saved", source="saved") if events else "",
            final=_ANSWER_UNDER_QUOTAS if quotas else _ANSWER_SAVED,
        )
    )


# Claim a key whose object save-metadata is about to delete (it broke the
# rules), as a sweep claims one: taken under the record's row lock, so a racing
# save either marked the record first (nothing is claimed, and its row is kept)
# or finds the claim and inserts nothing (_INSERT_FILE). The record is created
# when the presign's has not landed yet. It is marked swept at once, so no sweep
# takes the key again (and announces it again); should the delete that follows
# fail, the sweep deletes the object once more before it forgets the record.
CLAIM_REFUSED = """
    INSERT INTO pending_uploads AS p
        (object_key, provider, user_id, file_name, content_type, expires_at, sweep_claimed_at, swept_at)
    VALUES (%(object_key)s, %(provider)s, %(user_id)s, '', '', now(), now(), now())
    ON CONFLICT (object_key) DO UPDATE
        SET sweep_claimed_at = coalesce(p.sweep_claimed_at, now()), swept_at = coalesce(p.swept_at, now())
        WHERE p.saved_at IS NULL AND p.user_id = EXCLUDED.user_id
    RETURNING object_key, user_id, file_name, content_type, declared_size, sweep_claimed_at = now() AS new
"""
# The same claim, and its event (upload.rejected, with the refusal's reason and status)
# when the claim is new (a key refused again is not announced again).
_CLAIM_ANNOUNCED = """
    WITH claimed AS ({claim}),
    announced AS (
        INSERT INTO events (type, user_id, provider, object_key, data)
        SELECT 'upload.rejected', user_id, %(provider)s, object_key,
               jsonb_build_object(
                   'record', jsonb_build_array(object_key, file_name, content_type, declared_size),
                   'reason', %(reason)s, 'status', %(status)s)
        FROM claimed WHERE new
    )
    SELECT object_key FROM claimed
"""
CLAIM_REFUSED_ANNOUNCED = _CLAIM_ANNOUNCED.format(claim=CLAIM_REFUSED)

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
# from an id that was never this user's; its bytes leave the user's usage, and
# with webhooks on its event (file.deleted) is written, all in one statement.
_DELETE_FILE = """
    WITH gone AS (
        DELETE FROM {{table}}
        WHERE id = %(id)s AND user_id = %(user_id)s
        RETURNING {{columns}}
    ),
    remembered AS (
        INSERT INTO deleted_files (provider, file_id, user_id, object_key)
        SELECT %(provider)s, id, user_id, {{key}} FROM gone
        ON CONFLICT (provider, file_id) DO NOTHING
    ){announce}
    UPDATE user_usage AS u
    SET bytes = greatest(u.bytes - coalesce(gone.size_bytes, 0), 0), files = greatest(u.files - 1, 0)
    FROM gone WHERE u.user_id = gone.user_id
"""

SELECT_DELETED = """
    SELECT 1 FROM deleted_files
    WHERE provider = %(provider)s AND file_id = %(id)s AND user_id = %(user_id)s
"""


# One user's limits (an override, else the default) and usage: stored bytes and files
# (user_usage), and what their unsaved presigns reserve (records neither saved nor
# claimed by a sweep or a refused save).
_LIMITS_AND_USAGE = """
    limits AS (
        SELECT coalesce(q.max_bytes, %(quota_bytes)s::bigint) AS max_bytes,
               coalesce(q.max_files, %(quota_files)s::bigint) AS max_files,
               coalesce(q.max_unsaved_bytes, %(quota_unsaved_bytes)s::bigint) AS max_unsaved_bytes,
               coalesce(q.max_unsaved_uploads, %(quota_unsaved_uploads)s::bigint) AS max_unsaved_uploads
        FROM (SELECT 1) AS one LEFT JOIN user_quotas AS q ON q.user_id = %(user_id)s
    ),
    used AS (
        SELECT coalesce((SELECT bytes FROM user_usage WHERE user_id = %(user_id)s), 0) AS bytes,
               coalesce((SELECT files FROM user_usage WHERE user_id = %(user_id)s), 0) AS files,
               coalesce(sum(p.reserved_bytes), 0) AS unsaved_bytes,
               count(p.object_key) AS unsaved_uploads
        FROM pending_uploads AS p
        WHERE p.user_id = %(user_id)s AND p.reserved_bytes IS NOT NULL
          AND p.saved_at IS NULL AND p.sweep_claimed_at IS NULL
    )"""
_USAGE_COLUMNS = """
    used.bytes, used.files, used.unsaved_bytes, used.unsaved_uploads,
    limits.max_bytes, limits.max_files, limits.max_unsaved_bytes, limits.max_unsaved_uploads"""

_SELECT_USAGE = "WITH{limits_and_usage}\nSELECT{usage_columns}\nFROM used, limits"
SELECT_USAGE = _SELECT_USAGE.format(limits_and_usage=_LIMITS_AND_USAGE, usage_columns=_USAGE_COLUMNS)

# A presign under quotas: under its user's lock, write the key's record with what it
# reserves, unless that would take them over a limit (a reservation counts against the
# stored limits too, so the saves it allows fit); answer the usage it was judged by.
_RESERVE = """{lock}
    WITH{limits_and_usage},
    reserved AS (
        INSERT INTO pending_uploads (object_key, provider, user_id, file_name, content_type,
                                     declared_size, created_at, expires_at, reserved_bytes)
        SELECT %(object_key)s, %(provider)s, %(user_id)s, %(file_name)s, %(content_type)s,
               %(declared_size)s, %(created_at)s, %(expires_at)s, %(reserve)s
        FROM used, limits
        WHERE (max_bytes IS NULL OR used.bytes + used.unsaved_bytes + %(reserve)s <= max_bytes)
          AND (max_files IS NULL OR used.files + used.unsaved_uploads + 1 <= max_files)
          AND (max_unsaved_bytes IS NULL OR used.unsaved_bytes + %(reserve)s <= max_unsaved_bytes)
          AND (max_unsaved_uploads IS NULL OR used.unsaved_uploads + 1 <= max_unsaved_uploads)
        ON CONFLICT (object_key) DO NOTHING
        RETURNING object_key
    )
    SELECT (SELECT count(*) FROM reserved),{usage_columns}
    FROM used, limits
"""
RESERVE = _RESERVE.format(lock=_QUOTA_LOCK, limits_and_usage=_LIMITS_AND_USAGE, usage_columns=_USAGE_COLUMNS)


def _quota_params(limits: QuotaLimits | None) -> dict[str, int | None]:
    limits = limits or QuotaLimits()
    return {
        "quota_lock_class": QUOTA_LOCK_CLASS,
        "quota_bytes": limits.bytes,
        "quota_files": limits.files,
        "quota_unsaved_bytes": limits.unsaved_bytes,
        "quota_unsaved_uploads": limits.unsaved_uploads,
    }


def _usage_and_limits(row: tuple[Any, ...]) -> tuple[Usage, QuotaLimits]:
    return Usage(*(int(v) for v in row[:4])), QuotaLimits(*row[4:8])


def _file_queries(table: str, key: str, *, events: bool, quotas: bool) -> dict[str, str]:
    columns = FILE_COLUMNS.format(key=key)
    announce_deleted = _ANNOUNCE_ROW.format(event="file.deleted", source="gone") if events else ""
    return {
        name: query.format(table=table, key=key, columns=columns)
        for name, query in (
            ("insert", _insert_file_query(events=events, quotas=quotas)),
            ("select_by_key", _SELECT_FILE_BY_KEY),
            ("key_state", _SELECT_KEY_STATE),
            ("select_page", _SELECT_PAGE),
            ("select_by_id", _SELECT_FILE_BY_ID),
            ("delete", _DELETE_FILE.format(announce=announce_deleted)),
        )
    }


# provider -> query name -> SQL, for each of (events on, quotas enforced): chosen once, at start-up.
FILE_QUERIES: dict[tuple[bool, bool], dict[str, dict[str, str]]] = {
    (events, quotas): {
        provider: _file_queries(table, key, events=events, quotas=quotas)
        for provider, (table, key) in FILE_TABLES.items()
    }
    for events in (False, True)
    for quotas in (False, True)
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

    def __init__(
        self,
        transaction: Transaction,
        *,
        row_level_security: bool = False,
        events: bool = False,
        quotas: QuotaLimits | None = None,
    ):
        """``events``: write the outbox's events; ``quotas``: enforce these default limits."""
        self._transaction = transaction
        self._row_level_security = row_level_security
        self._events = events
        self._quotas = quotas
        self._queries = FILE_QUERIES[(events, quotas is not None)]
        self._quota_params = _quota_params(quotas)

    @property
    def quotas_enforced(self) -> bool:
        """Whether presigns reserve and saves check the users' limits."""
        return self._quotas is not None

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
            cur.execute(self._queries[provider]["select_by_key"], {"object_key": object_key})
            row = cur.fetchone()
            return _stored_file(provider, row) if row else None

        return self._run(user_id, work)

    def key_state(self, provider: str, object_key: str, user_id: str) -> KeyState:
        """Whether ``object_key`` was saved, or cleaned up (swept, or refused at save)."""

        def work(cur: QueryCursor) -> KeyState:
            cur.execute(self._queries[provider]["key_state"], {"object_key": object_key})
            row = cur.fetchone()
            return KeyState(saved=bool(row and row[0]), cleaned_up=bool(row and row[1]))

        return self._run(user_id, work)

    def save_file(self, provider: str, new: NewFile) -> tuple[StoredFile | None, bool]:
        """Insert the row unless the key has one; return the row and whether it is new.

        Racing saves of one key meet at the unique constraint: one inserts,
        the others read back the winner's row. The row is None when the key
        belongs to a row this user may not see (row-level security).
        """
        queries = self._queries[provider]
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
            **self._quota_params,
        }

        def work(cur: QueryCursor) -> tuple[StoredFile | None, bool]:
            cur.execute(queries["insert"], params)
            row = cur.fetchone()
            over: QuotaExceeded | None = None
            if self._quotas is not None and row is not None:
                allowed, stored_bytes, stored_files, max_bytes, max_files = row[12:]
                row = row[:12] if row[0] is not None else None
                if not allowed:
                    usage = Usage(bytes=int(stored_bytes), files=int(stored_files))
                    over = QuotaExceeded(usage, QuotaLimits(bytes=max_bytes, files=max_files))
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
            # A racing save, a sweep or a deleted file answer as they would without quotas.
            if over is not None:
                raise over
            return None, False

        return self._run(new.user_id, work)

    def claim_refused(
        self, provider: str, object_key: str, user_id: str, reason: str = "", status: int = 0
    ) -> bool:
        """Claim a key whose object is about to be deleted; False when a save recorded it first.

        With events on, the claim writes its ``upload.rejected`` event (``reason``, ``status``).
        """
        params = {
            "object_key": object_key,
            "provider": provider,
            "user_id": user_id,
            "reason": reason,
            "status": status,
        }
        query = CLAIM_REFUSED_ANNOUNCED if self._events else CLAIM_REFUSED

        def work(cur: QueryCursor) -> bool:
            cur.execute(query, params)
            return cur.fetchone() is not None

        return self._run(user_id, work)

    def list_files(self, provider: str, user_id: str, before: int, limit: int) -> list[StoredFile]:
        """Return up to ``limit`` of the user's files with ids below ``before``, newest first."""
        params = {"user_id": user_id, "before": before, "limit": limit}

        def work(cur: QueryCursor) -> list[StoredFile]:
            cur.execute(self._queries[provider]["select_page"], params)
            return [_stored_file(provider, row) for row in cur.fetchall()]

        return self._run(user_id, work)

    def get_file(self, provider: str, user_id: str, file_id: int) -> StoredFile | None:
        """Return the user's file ``file_id``, or None (also when it is another user's)."""
        params = {"user_id": user_id, "id": file_id}

        def work(cur: QueryCursor) -> StoredFile | None:
            cur.execute(self._queries[provider]["select_by_id"], params)
            row = cur.fetchone()
            return _stored_file(provider, row) if row else None

        return self._run(user_id, work)

    def delete_file(self, provider: str, user_id: str, file_id: int) -> None:
        """Delete the user's row ``file_id`` and remember that it was deleted."""
        params = {"user_id": user_id, "id": file_id, "provider": provider}
        self._run(user_id, functools.partial(_execute, self._queries[provider]["delete"], params))

    def was_deleted(self, provider: str, user_id: str, file_id: int) -> bool:
        """Whether this user deleted ``file_id`` earlier."""
        params = {"user_id": user_id, "id": file_id, "provider": provider}

        def work(cur: QueryCursor) -> bool:
            cur.execute(SELECT_DELETED, params)
            return cur.fetchone() is not None

        return self._run(user_id, work)

    def reserve(self, record: PendingUpload, reserve_bytes: int) -> tuple[bool, Usage, QuotaLimits]:
        """Write ``record`` reserving ``reserve_bytes`` unless over a limit; say so, and the usage judged."""
        params = {
            **self._quota_params,
            **dataclasses.asdict(record),
            "content_type": record.content_type or "",
            "reserve": reserve_bytes,
        }

        def work(cur: QueryCursor) -> tuple[bool, Usage, QuotaLimits]:
            cur.execute(RESERVE, params)
            row = cur.fetchone()
            assert row is not None
            usage, limits = _usage_and_limits(row[1:])
            return bool(row[0]), usage, limits

        return self._run(record.user_id, work)

    def usage(self, user_id: str) -> tuple[Usage, QuotaLimits]:
        """The user's usage, and their limits (None: unlimited) under the defaults this repository has."""
        params = {**self._quota_params, "user_id": user_id}

        def work(cur: QueryCursor) -> tuple[Usage, QuotaLimits]:
            cur.execute(SELECT_USAGE, params)
            row = cur.fetchone()
            assert row is not None
            return _usage_and_limits(row)

        return self._run(user_id, work)

"""Operators' SQL (`flask storage sweep|reconcile`), run as the tables' owner on a connection of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extensions import connection as Connection

from .tables import FILE_COLUMNS, FILE_TABLES

# Which role are we? Under row-level security a non-owner sees only the rows
# of the user a transaction names, so a sweep would silently find nothing.
SELECT_ROW_SECURITY_ACTIVE = "SELECT row_security_active('pending_uploads')"

# Claim a batch of abandoned uploads: presigned before the cut-off, whose
# upload URL has expired (an Azure SAS for a large file lives for days: a key
# whose URL still works is never swept, or a later PUT would land an object
# nobody looks at), never saved, no row in any files table. SKIP LOCKED hands
# racing sweepers disjoint batches; the claim commits before any object is deleted, and a
# save that comes later is refused (_INSERT_FILE). A claim whose sweeper died
# before marking it swept is taken again once it is stale.
SWEEP_CLAIM = """
    UPDATE pending_uploads AS p
    SET sweep_claimed_at = now()
    FROM (
        SELECT object_key
        FROM pending_uploads AS c
        WHERE c.saved_at IS NULL
          AND c.created_at < now() - make_interval(secs => %(older_than)s)
          AND c.expires_at < now() - make_interval(secs => %(expired_for)s)
          AND c.provider = ANY(%(providers)s)
          AND (c.sweep_claimed_at IS NULL
               OR (c.swept_at IS NULL AND c.sweep_claimed_at < now() - make_interval(secs => %(stale)s)))
          {no_file_row}
        ORDER BY c.created_at
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) AS batch
    WHERE p.object_key = batch.object_key
    RETURNING p.object_key, p.provider
"""
# Built from the table map, like every other per-provider query: no row in any files table.
_NO_FILE_ROW = "AND NOT EXISTS (SELECT 1 FROM {table} f WHERE f.{key} = c.object_key)"
SWEEP_CLAIM = SWEEP_CLAIM.format(
    no_file_row="\n          ".join(
        _NO_FILE_ROW.format(table=table, key=key) for table, key in FILE_TABLES.values()
    )
)

# Keys some URL signed for them may still upload to: their unfinished
# multipart uploads are not aborted.
SELECT_LIVE_KEYS = """
    SELECT object_key FROM pending_uploads
    WHERE object_key = ANY(%(keys)s) AND expires_at >= now() - make_interval(secs => %(expired_for)s)
"""

MARK_SWEPT = """
    UPDATE pending_uploads SET swept_at = now()
    WHERE object_key = ANY(%(keys)s) AND sweep_claimed_at IS NOT NULL AND swept_at IS NULL
"""
# The same, and an upload.swept event for each upload whose owner is known (an orphan
# object that reconcile claimed has none).
MARK_SWEPT_ANNOUNCED = """
    WITH swept AS (
        UPDATE pending_uploads SET swept_at = now()
        WHERE object_key = ANY(%(keys)s) AND sweep_claimed_at IS NOT NULL AND swept_at IS NULL
        RETURNING object_key, provider, user_id, file_name, content_type, declared_size
    )
    INSERT INTO events (type, user_id, provider, object_key, data)
    SELECT 'upload.swept', user_id, provider, object_key,
           jsonb_build_object('record', jsonb_build_array(object_key, file_name, content_type, declared_size))
    FROM swept WHERE user_id <> ''
"""

# Swept records are kept a while after the sweep (a save whose HEAD came just
# before the delete must still meet the claim, and a PUT that started before
# its URL expired may still be landing); then their objects are deleted once
# more (SELECT_FORGETTABLE) and the records forgotten (FORGET_SWEPT), so no
# object outlives the record that says it was swept.
SELECT_FORGETTABLE = """
    SELECT object_key, provider FROM pending_uploads
    WHERE swept_at < now() - make_interval(secs => %(keep)s) AND expires_at < now()
      AND provider = ANY(%(providers)s) AND object_key > %(after)s
    ORDER BY object_key
    LIMIT %(limit)s
"""

FORGET_SWEPT = """
    DELETE FROM pending_uploads
    WHERE object_key = ANY(%(keys)s) AND swept_at IS NOT NULL AND saved_at IS NULL
"""

# Reconcile: the bucket listing is copied, a page at a time, into a table
# under the run's own id (migration 008: a temporary table would not follow
# a transaction pooler's connections), and PostgreSQL does both anti-joins;
# the process holds one page at a time whatever the bucket's size.
# A run that died left its copy behind (migration 008 says a day; a week is safer:
# no run lists for that long, and a run's rows are never taken from under it).
DELETE_ABANDONED_LISTINGS = "DELETE FROM reconcile_listings WHERE listed_at < now() - interval '7 days'"
DELETE_LISTING = "DELETE FROM reconcile_listings WHERE run_id = %(run)s"
INSERT_LISTING = """
    INSERT INTO reconcile_listings (run_id, key, size, last_modified)
    SELECT %(run)s, r->>0, (r->>1)::bigint, (r->>2)::timestamptz
    FROM json_array_elements(%(objects)s::json) AS r
    ON CONFLICT (run_id, key) DO NOTHING
"""

_SELECT_OBJECTS_WITHOUT_ROW = """
    SELECT l.key, l.size, l.last_modified
    FROM reconcile_listings AS l
    WHERE l.run_id = %(run)s AND l.key > %(after)s
      AND NOT EXISTS (SELECT 1 FROM {table} AS f WHERE f.{key} = l.key)
    ORDER BY l.key
    LIMIT %(limit)s
"""

_SELECT_ROWS_WITHOUT_OBJECT = """
    SELECT f.id, f.{key}, f.user_id, f.upload_timestamp
    FROM {table} AS f
    WHERE f.id > %(after)s
      AND f.upload_timestamp < %(listed_since)s
      AND NOT EXISTS (SELECT 1 FROM reconcile_listings AS l WHERE l.run_id = %(run)s AND l.key = f.{key})
    ORDER BY f.id
    LIMIT %(limit)s
"""

_COUNT_ROWS = "SELECT count(*) FROM {table}"

# Claim orphan objects for deletion the way a sweep claims abandoned uploads,
# creating the record when presign's never landed: a save racing the fix
# either marks the record first (and the object is kept) or is refused.
_CLAIM_ORPHANS = """
    INSERT INTO pending_uploads AS p
        (object_key, provider, user_id, file_name, content_type, expires_at, sweep_claimed_at)
    SELECT k, %(provider)s, '', '', '', now(), now()
    FROM unnest(%(keys)s::text[]) AS k
    WHERE NOT EXISTS (SELECT 1 FROM {table} AS f WHERE f.{key} = k)
    ON CONFLICT (object_key) DO UPDATE SET sweep_claimed_at = now(), swept_at = NULL
        WHERE p.saved_at IS NULL
          AND (p.sweep_claimed_at IS NULL OR p.swept_at IS NOT NULL
               OR p.sweep_claimed_at < now() - make_interval(secs => %(stale)s))
    RETURNING object_key
"""

# A row whose object is gone: deleted and remembered for its owner, its bytes taken
# out of their usage, and with webhooks on its file.deleted event written.
_DELETE_ROW_BY_ID = """
    WITH gone AS (
        DELETE FROM {table}
        WHERE id = %(id)s AND {key} = %(object_key)s
        RETURNING {columns}
    ),
    remembered AS (
        INSERT INTO deleted_files (provider, file_id, user_id, object_key)
        SELECT %(provider)s, id, user_id, {key} FROM gone
        ON CONFLICT (provider, file_id) DO NOTHING
    ),
    announced AS (
        INSERT INTO events (type, user_id, provider, object_key, data)
        SELECT 'file.deleted', user_id, %(provider)s, {key},
               jsonb_build_object('row', jsonb_build_array({columns}))
        FROM gone WHERE %(events)s
    )
    UPDATE user_usage AS u
    SET bytes = greatest(u.bytes - coalesce(gone.size_bytes, 0), 0), files = greatest(u.files - 1, 0)
    FROM gone WHERE u.user_id = gone.user_id
"""


def _maintenance_queries(table: str, key: str) -> dict[str, str]:
    columns = FILE_COLUMNS.format(key=key)
    return {
        name: query.format(table=table, key=key, columns=columns)
        for name, query in (
            ("objects_without_row", _SELECT_OBJECTS_WITHOUT_ROW),
            ("rows_without_object", _SELECT_ROWS_WITHOUT_OBJECT),
            ("count_rows", _COUNT_ROWS),
            ("claim_orphans", _CLAIM_ORPHANS),
            ("delete_row", _DELETE_ROW_BY_ID),
        )
    }


MAINTENANCE_QUERIES: dict[str, dict[str, str]] = {
    provider: _maintenance_queries(table, key) for provider, (table, key) in FILE_TABLES.items()
}


@dataclass(frozen=True)
class ListedRow:
    """A files-table row that reconcile looks at."""

    id: int
    object_key: str
    user_id: str
    uploaded_at: datetime | None


class MaintenanceRepository:
    """The operators' queries, on one connection of their own (not the request pool).

    Each method is one transaction, committed before it returns: a claim must
    be visible to saves before the objects it names are deleted.
    """

    def __init__(self, conn: Connection, *, events: bool = False):
        """``events``: write the outbox's events for what is swept and deleted."""
        self._conn = conn
        self._events = events
        self._listing = str(uuid.uuid4())

    def _one(self, query: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self._conn, self._conn.cursor() as cur:
            cur.execute(query, params or {})
            return cur.fetchall() if cur.description else []

    def row_security_hides_rows(self) -> bool:
        """Whether row-level security applies to this role (so it cannot see every user's rows)."""
        return bool(self._one(SELECT_ROW_SECURITY_ACTIVE)[0][0])

    def claim_abandoned(
        self,
        providers: Sequence[str],
        older_than: float,
        limit: int,
        stale_after: float,
        expired_for: float = 0,
    ) -> list[tuple[str, str]]:
        """Claim up to ``limit`` abandoned uploads whose URL expired ``expired_for`` seconds ago or more."""
        params = {
            "providers": list(providers),
            "older_than": older_than,
            "limit": limit,
            "stale": stale_after,
            "expired_for": expired_for,
        }
        return [(row[0], row[1]) for row in self._one(SWEEP_CLAIM, params)]

    def live_keys(self, keys: Sequence[str], expired_for: float = 0) -> set[str]:
        """Return those of ``keys`` whose latest signed URL expired less than ``expired_for`` seconds ago."""
        if not keys:
            return set()
        params = {"keys": list(keys), "expired_for": expired_for}
        return {row[0] for row in self._one(SELECT_LIVE_KEYS, params)}

    def mark_swept(self, keys: Sequence[str]) -> None:
        """Record that the objects of these claimed keys are deleted."""
        if keys:
            self._one(MARK_SWEPT_ANNOUNCED if self._events else MARK_SWEPT, {"keys": list(keys)})

    def forgettable(
        self, providers: Sequence[str], keep_seconds: float, after: str, limit: int
    ) -> list[tuple[str, str]]:
        """Return (key, provider) of up to ``limit`` records swept over ``keep_seconds`` ago."""
        params = {"providers": list(providers), "keep": keep_seconds, "after": after, "limit": limit}
        return [(row[0], row[1]) for row in self._one(SELECT_FORGETTABLE, params)]

    def forget_swept(self, keys: Sequence[str]) -> int:
        """Delete these swept records; return how many went."""
        if not keys:
            return 0
        with self._conn, self._conn.cursor() as cur:
            cur.execute(FORGET_SWEPT, {"keys": list(keys)})
            return int(cur.rowcount)

    def start_listing(self) -> None:
        """Start a new copy of a bucket listing (and remove what runs that died left behind)."""
        self.finish_listing()
        self._listing = str(uuid.uuid4())
        self._one(DELETE_ABANDONED_LISTINGS)

    def add_to_listing(self, objects: Sequence[tuple[str, int, datetime]]) -> None:
        """Append one page of a bucket listing."""
        rows = [(key, size, modified.isoformat()) for key, size, modified in objects]
        self._one(INSERT_LISTING, {"run": self._listing, "objects": json.dumps(rows)})

    def finish_listing(self) -> None:
        """Remove this run's copy of the listing."""
        self._one(DELETE_LISTING, {"run": self._listing})

    def count_rows(self, provider: str) -> int:
        """Return how many rows the provider's files table holds."""
        return int(self._one(MAINTENANCE_QUERIES[provider]["count_rows"])[0][0])

    def objects_without_row(self, provider: str, after: str, limit: int) -> list[tuple[str, int, datetime]]:
        """Return listed objects after ``after`` (by key) that have no row."""
        query = MAINTENANCE_QUERIES[provider]["objects_without_row"]
        params = {"run": self._listing, "after": after, "limit": limit}
        return [(r[0], r[1], r[2]) for r in self._one(query, params)]

    def rows_without_object(
        self, provider: str, after: int, listed_since: datetime, limit: int
    ) -> list[ListedRow]:
        """Return rows after id ``after``, older than the listing, whose object was not listed."""
        query = MAINTENANCE_QUERIES[provider]["rows_without_object"]
        params = {"run": self._listing, "after": after, "listed_since": listed_since, "limit": limit}
        return [ListedRow(*row) for row in self._one(query, params)]

    def claim_orphans(self, provider: str, keys: Sequence[str], stale_after: float) -> list[str]:
        """Claim objects with no row for deletion; return the keys claimed."""
        query = MAINTENANCE_QUERIES[provider]["claim_orphans"]
        params = {"provider": provider, "keys": list(keys), "stale": stale_after}
        return [row[0] for row in self._one(query, params)]

    def delete_row(self, provider: str, row: ListedRow) -> None:
        """Delete a row whose object is gone, remembering it as deleted for its owner."""
        params = {"id": row.id, "object_key": row.object_key, "provider": provider, "events": self._events}
        self._one(MAINTENANCE_QUERIES[provider]["delete_row"], params)

"""The operators' quota SQL: per-user overrides, and a recount of usage from the tables themselves."""

from __future__ import annotations

from typing import Any

from psycopg2.extensions import connection as Connection

from ..config import QuotaLimits

# Each limit given replaces the user's override (None: back to the default); the others stay.
UPSERT_OVERRIDE = """
    INSERT INTO user_quotas AS q (user_id, max_bytes, max_files, max_unsaved_bytes, max_unsaved_uploads)
    VALUES (%(user_id)s, %(bytes)s, %(files)s, %(unsaved_bytes)s, %(unsaved_uploads)s)
    ON CONFLICT (user_id) DO UPDATE SET
        max_bytes = CASE WHEN %(set_bytes)s THEN EXCLUDED.max_bytes ELSE q.max_bytes END,
        max_files = CASE WHEN %(set_files)s THEN EXCLUDED.max_files ELSE q.max_files END,
        max_unsaved_bytes = CASE WHEN %(set_unsaved_bytes)s THEN EXCLUDED.max_unsaved_bytes
                                 ELSE q.max_unsaved_bytes END,
        max_unsaved_uploads = CASE WHEN %(set_unsaved_uploads)s THEN EXCLUDED.max_unsaved_uploads
                                   ELSE q.max_unsaved_uploads END,
        updated_at = now()
    RETURNING max_bytes, max_files, max_unsaved_bytes, max_unsaved_uploads
"""

SELECT_OVERRIDE = """
    SELECT max_bytes, max_files, max_unsaved_bytes, max_unsaved_uploads
    FROM user_quotas
    WHERE user_id = %(user_id)s
"""

LOCK_USAGE = "LOCK TABLE user_usage IN SHARE ROW EXCLUSIVE MODE"

# What user_usage should say, from the four files tables (for every user, or one).
RECOUNT = """
    WITH counted AS (
        SELECT user_id, sum(coalesce(size_bytes, 0)) AS bytes, count(*) AS files
        FROM (
            SELECT user_id, size_bytes FROM s3_files
            UNION ALL SELECT user_id, size_bytes FROM r2_files
            UNION ALL SELECT user_id, size_bytes FROM b2_files
            UNION ALL SELECT user_id, size_bytes FROM azure_files
        ) AS f
        WHERE %(user_id)s::text IS NULL OR user_id = %(user_id)s
        GROUP BY user_id
    ),
    fixed AS (
        INSERT INTO user_usage AS u (user_id, bytes, files)
        SELECT user_id, bytes, files FROM counted
        ON CONFLICT (user_id) DO UPDATE SET bytes = EXCLUDED.bytes, files = EXCLUDED.files
            WHERE (u.bytes, u.files) IS DISTINCT FROM (EXCLUDED.bytes, EXCLUDED.files)
        RETURNING user_id
    ),
    emptied AS (
        UPDATE user_usage AS u SET bytes = 0, files = 0
        WHERE (%(user_id)s::text IS NULL OR u.user_id = %(user_id)s)
          AND NOT EXISTS (SELECT 1 FROM counted AS c WHERE c.user_id = u.user_id)
          AND (u.bytes, u.files) <> (0, 0)
        RETURNING user_id
    )
    SELECT (SELECT count(*) FROM fixed) + (SELECT count(*) FROM emptied)
"""


class QuotaRepository:
    """Quota administration on a connection of the caller's; each method is one transaction."""

    def __init__(self, conn: Connection):
        self._conn = conn

    def _one(self, query: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        with self._conn, self._conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def set_override(self, user_id: str, changes: dict[str, int | None]) -> QuotaLimits:
        """Set the named limits of ``user_id`` (``bytes``, ``files``, ...; None: the default)."""
        params: dict[str, Any] = {"user_id": user_id}
        for name in ("bytes", "files", "unsaved_bytes", "unsaved_uploads"):
            params[name] = changes.get(name)
            params[f"set_{name}"] = name in changes
        row = self._one(UPSERT_OVERRIDE, params)
        assert row is not None
        return QuotaLimits(*row)

    def override(self, user_id: str) -> QuotaLimits:
        """The user's overrides (None where the default applies)."""
        row = self._one(SELECT_OVERRIDE, {"user_id": user_id})
        return QuotaLimits(*row) if row else QuotaLimits()

    def recount(self, user_id: str | None = None) -> int:
        """Set user_usage from the files tables (every user, or one); return how many rows changed.

        Saves and deletes wait meanwhile (the lock comes first, in its own statement, so the
        count's snapshot is taken after every one of them before it has committed): a change
        that committed after the count's snapshot would otherwise be overwritten.
        """
        with self._conn, self._conn.cursor() as cur:
            cur.execute(LOCK_USAGE)
            cur.execute(RECOUNT, {"user_id": user_id})
            row = cur.fetchone()
        return int(row[0]) if row else 0

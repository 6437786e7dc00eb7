"""What every query shares: the guides' four file tables, and what a repository needs of a cursor.

The four file tables are the guides' own (``s3_files``, ``r2_files``,
``b2_files`` keyed by ``object_key``; ``azure_files`` keyed by ``blob_name``).
Their names come from the fixed map below, never from input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from psycopg2.extensions import cursor as Cursor


class QueryCursor(Protocol):
    """What the repository needs of a cursor."""

    def execute(self, query: str, params: dict[str, Any], /) -> Any: ...

    def fetchone(self) -> tuple[Any, ...] | None: ...

    def fetchall(self) -> list[tuple[Any, ...]]: ...


# Runs one unit of work on a borrowed connection (``Database.run``).
Transaction = Callable[[Callable[[Cursor], Any]], Any]

# provider -> (table, key column), straight from the guides.
FILE_TABLES: dict[str, tuple[str, str]] = {
    "s3": ("s3_files", "object_key"),
    "r2": ("r2_files", "object_key"),
    "b2": ("b2_files", "object_key"),
    "azure": ("azure_files", "blob_name"),
}

# A file row as every query reads it (StoredFile's order; events keep it as an array).
FILE_COLUMNS = (
    "id, {key}, file_url, user_id, file_name, content_type, size_bytes, etag, upload_timestamp,"
    " detected_content_type, checksum_sha256, content_md5"
)

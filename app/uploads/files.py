"""A user's saved files: list them, describe one with a download link, delete one.

Every lookup is scoped to the caller: another user's file id answers 404,
never 403, so ids say nothing about who else has files.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import BadRequest, NotFound
from ..repository import FileRepository, StoredFile
from ..storage import ProviderRegistry, StorageProvider
from .policy import is_active_type, media_essence

DEFAULT_PAGE_SIZE = 20
OCTET_STREAM = "application/octet-stream"
MAX_PAGE_SIZE = 100
# ids are SERIAL (int4): nothing above this can exist.
MAX_FILE_ID = 2**31 - 1
_ID = re.compile(r"^[0-9]{1,20}$")
_CURSOR_PREFIX = "v1:"

# Types a browser may show in place. Everything else is served as an
# attachment: the stored type is whatever the uploader claimed, and an
# "text/html" or "image/svg+xml" shown inline would run its scripts.
INLINE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "application/pdf"}
)


def file_fields(row: StoredFile) -> dict[str, Any]:
    """A saved file as the API describes it (every field but the fresh ``downloadUrl``)."""
    fields: dict[str, Any] = {
        "id": row.id,
        "provider": row.provider,
        "objectKey": row.object_key,
        "fileName": row.file_name,
        "contentType": row.content_type,
        "detectedContentType": row.detected_content_type,
        "size": row.size_bytes,
        "checksumSHA256": row.checksum_sha256,
        "contentMD5": row.content_md5,
        "etag": row.etag,
        "fileUrl": row.file_url,
        "uploadedAt": row.uploaded_at.isoformat().replace("+00:00", "Z") if row.uploaded_at else None,
    }
    if row.provider == "azure":
        fields["blobName"] = row.object_key
    return fields


def content_disposition(file_name: str, content_type: str | None) -> str:
    """Return a Content-Disposition with the original name (RFC 6266, RFC 8187 ``filename*``)."""
    kind = "inline" if media_essence(content_type or "") in INLINE_TYPES else "attachment"
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in file_name)
    encoded = quote(file_name, safe="!#$&+^`|")
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def encode_cursor(last_id: int) -> str:
    """Return the opaque cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{last_id}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the id a cursor continues after, or refuse one this service did not issue."""
    try:
        if len(cursor) > 32:
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith(_CURSOR_PREFIX) or not _ID.match(text[len(_CURSOR_PREFIX) :]):
            raise ValueError(text)
        last_id = int(text[len(_CURSOR_PREFIX) :])
    except (ValueError, UnicodeError, binascii.Error):
        raise BadRequest("cursor is not valid: pass nextCursor from the previous page unchanged") from None
    return min(last_id, MAX_FILE_ID + 1)


def parse_limit(raw: str | None) -> int:
    """Return the page size asked for (default 20), or refuse it."""
    if raw is None:
        return DEFAULT_PAGE_SIZE
    if not _ID.match(raw) or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}")
    return int(raw)


def parse_file_id(raw: str) -> int | None:
    """Return the file id in a path, None when no file can have it, or refuse a malformed one."""
    if not _ID.match(raw):
        raise BadRequest("file id must be a positive whole number, such as 42")
    file_id = int(raw)
    return file_id if 1 <= file_id <= MAX_FILE_ID else None


@dataclass(frozen=True)
class FilePage:
    """One page of a user's files and the cursor to the next, if any."""

    files: list[StoredFile]
    next_cursor: str | None


class FileService:
    """Reads and deletes saved files on behalf of their owners."""

    def __init__(self, repo: FileRepository, providers: ProviderRegistry, download_expires_seconds: int):
        self._repo = repo
        self._providers = providers
        self._expires = download_expires_seconds

    def download_url(self, row: StoredFile) -> str:
        """Return a fresh link that reads the file (public, or signed for a private bucket)."""
        provider = self._providers.require(row.provider)
        name = row.file_name or row.object_key.rsplit("/", 1)[-1]
        # What the bytes were found to be counts as much as what they were declared:
        # either one a browser would run makes the download an attachment.
        active = is_active_type(row.content_type or "") or is_active_type(row.detected_content_type or "")
        # Inline only where the bytes are what was declared (or could not be named).
        declared = media_essence(row.content_type or "")
        inline_as = row.content_type if row.detected_content_type in (None, declared) else None
        return provider.download_url(
            row.object_key,
            self._expires,
            content_disposition(name, inline_as),
            # The type recorded when the file was checked, not whatever the
            # object holds now (a replayed upload URL can replace it).
            content_type=OCTET_STREAM if active or not row.content_type else row.content_type,
            # Even on a public bucket: the plain URL would serve HTML or SVG inline.
            plain_ok=not active,
        )

    def list_files(self, provider: StorageProvider, user_id: str, limit: int, cursor: str | None) -> FilePage:
        """Return a page of the user's files, newest first."""
        before = decode_cursor(cursor) if cursor is not None else MAX_FILE_ID + 1
        # One more than asked: whether it comes back says if there is a next page.
        rows = self._repo.list_files(provider.name, user_id, before, limit + 1)
        if len(rows) <= limit:
            return FilePage(rows, None)
        return FilePage(rows[:limit], encode_cursor(rows[limit - 1].id))

    def _find(
        self, provider: StorageProvider, user_id: str, raw_id: str
    ) -> tuple[int | None, StoredFile | None]:
        file_id = parse_file_id(raw_id)
        row = self._repo.get_file(provider.name, user_id, file_id) if file_id is not None else None
        return file_id, row

    def get_file(self, provider: StorageProvider, user_id: str, raw_id: str) -> StoredFile:
        """Return the user's file, or 404."""
        _, row = self._find(provider, user_id, raw_id)
        if row is None:
            raise NotFound(f"no file {raw_id} among your {provider.name} files")
        return row

    def delete_file(self, provider: StorageProvider, user_id: str, raw_id: str) -> None:
        """Delete the object, then the row; deleting a file already deleted is fine."""
        file_id, row = self._find(provider, user_id, raw_id)
        if row is None:
            if file_id is not None and self._repo.was_deleted(provider.name, user_id, file_id):
                return
            raise NotFound(f"no file {raw_id} among your {provider.name} files")
        # Object first: if storage fails the row stays, and the client can retry.
        provider.delete(row.object_key)
        self._repo.delete_file(provider.name, user_id, row.id)

"""An outbox event as its receivers get it: one JSON body, the same for every attempt.

The body follows the Standard Webhooks payload shape (``type``,
``timestamp``, ``data``) and carries the event's ``id`` too (the
``webhook-id`` header). ``data`` holds the user, the provider and, for
``file.*``, the file as the API describes it (``GET /P/files/<id>`` without
its ``downloadUrl``, a signed link that would be stale by the time a retry
arrives); for ``upload.*``, the upload as presigned, and for
``upload.rejected`` the refusal's reason and status.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..repository import StoredFile
from ..repository.events import OutboxEvent
from ..uploads.files import file_fields


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _row_file(provider: str, row: list[Any]) -> dict[str, Any]:
    """The file JSON of a row kept as an array in FILE_COLUMNS order."""
    uploaded_at = datetime.fromisoformat(row[8]) if row[8] else None
    return file_fields(
        StoredFile(
            id=row[0],
            provider=provider,
            object_key=row[1],
            file_url=row[2],
            user_id=row[3],
            file_name=row[4],
            content_type=row[5],
            size_bytes=row[6],
            etag=row[7],
            uploaded_at=uploaded_at,
            detected_content_type=row[9],
            checksum_sha256=row[10],
            content_md5=row[11],
        )
    )


def _upload(provider: str, record: list[Any]) -> dict[str, Any]:
    object_key, file_name, content_type, declared_size = record
    upload = {
        "provider": provider,
        "objectKey": object_key,
        "fileName": file_name or None,
        "contentType": content_type or None,
        "declaredSize": declared_size,
    }
    if provider == "azure":
        upload["blobName"] = object_key
    return upload


def event_data(event: OutboxEvent) -> dict[str, Any]:
    """The ``data`` member of an event's body."""
    data: dict[str, Any] = {"userId": event.user_id, "provider": event.provider}
    if "row" in event.data:
        data["file"] = _row_file(event.provider, event.data["row"])
    else:
        data["upload"] = _upload(event.provider, event.data["record"])
    if event.type == "upload.rejected":
        data["reason"] = event.data.get("reason")
        data["status"] = event.data.get("status")
    return data


def event_body(event: OutboxEvent) -> bytes:
    """The JSON body POSTed for ``event`` (compact, UTF-8)."""
    body = {
        "id": event.id,
        "type": event.type,
        "timestamp": _timestamp(event.occurred_at),
        "data": event_data(event),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

"""Helpers shared by the tests: talking to the service, reading tables back, running calls at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg2.extensions
import requests
from flask import Flask
from flask.testing import FlaskClient

from app import components
from app.config import PROVIDERS, S3_FAMILY  # noqa: F401 - re-exported for the tests
from app.repository import PendingUpload
from app.storage import ObjectInfo, StagingProvider, StorageProvider
from app.uploads.recorder import PendingRecorder

T = TypeVar("T")

FILE_TABLES = {"s3": "s3_files", "r2": "r2_files", "b2": "b2_files", "azure": "azure_files"}
KEY_COLUMNS = {"s3": "object_key", "r2": "object_key", "b2": "object_key", "azure": "blob_name"}


def presign(
    client: FlaskClient,
    provider: str,
    file_name: str = "hello.txt",
    content_type: str = "text/plain",
    file_size: int | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Ask the service to presign an upload and return its answer (asserting 200)."""
    body: dict[str, Any] = {"fileName": file_name, "contentType": content_type}
    if file_size is not None:
        body["fileSize"] = file_size
    headers = {"X-User-Id": user} if user else {}
    response = client.post(f"/{provider}/presign-upload", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    data: dict[str, Any] = response.get_json()
    return data


def put(presigned: dict[str, Any], data: bytes, **header_overrides: str) -> requests.Response:
    """PUT ``data`` to the presigned URL with the headers the service asked for."""
    headers = {**presigned["headers"], **header_overrides}
    return requests.put(presigned["presignedUrl"], data=data, headers=headers, timeout=30)


SERVICE_ORIGIN = "http://localhost"


class StepAnswer:
    """What a URL answered, read the same way from the service (test client) and from storage."""

    def __init__(self, status_code: int, text: str, headers: Any):
        self.status_code, self.text, self.headers = status_code, text, headers

    @property
    def ok(self) -> bool:
        return self.status_code < 400


def send_to(
    client: FlaskClient, method: str, url: str, data: bytes | str = b"", headers: dict[str, str] | None = None
) -> StepAnswer:
    """Send a request to a URL the sign route answered: the service's own (create, complete) or storage's."""
    if url.startswith(SERVICE_ORIGIN + "/"):
        answer = client.open(url[len(SERVICE_ORIGIN) :], method=method, data=data, headers=headers or {})
        return StepAnswer(answer.status_code, answer.get_data(as_text=True), answer.headers)
    response = requests.request(method, url, data=data, headers=headers, timeout=60)
    return StepAnswer(response.status_code, response.text, response.headers)


def staged(storage: StorageProvider, key: str) -> ObjectInfo | None:
    """The staged upload of ``key``, on a provider that stages uploads (Azure's in blocks); else None."""
    return storage.head_staged(key) if isinstance(storage, StagingProvider) else None


def save(client: FlaskClient, provider: str, key: str, user: str | None = None) -> Any:
    """Call save-metadata for ``key``."""
    headers = {"X-User-Id": user} if user else {}
    return client.post(f"/{provider}/save-metadata", json={"objectKey": key}, headers=headers)


def recorder(app: Flask) -> PendingRecorder:
    """Return the app's queue of presign records (written behind presign's answers)."""
    return components.uploads(app).recorder


def rows(conn: psycopg2.extensions.connection, provider: str) -> list[dict[str, Any]]:
    """Return every row of a provider's files table as dicts."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {FILE_TABLES[provider]} ORDER BY id")  # noqa: S608 - fixed names
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def upload(
    client: FlaskClient,
    provider: str,
    data: bytes = b"hello",
    file_name: str = "hello.txt",
    content_type: str = "text/plain",
    user: str | None = None,
) -> dict[str, Any]:
    """Presign, PUT ``data`` to storage and save it; return the saved file object."""
    presigned = presign(client, provider, file_name, content_type, file_size=len(data), user=user)
    uploaded = put(presigned, data)
    assert uploaded.status_code in (200, 201), uploaded.text
    response = save(client, provider, presigned["objectKey"], user=user)
    assert response.status_code == 201, response.get_json()
    saved: dict[str, Any] = response.get_json()["file"]
    return saved


PRESIGNED_AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def pending_record(n: int, provider: str = "s3", user: str = "alice") -> PendingUpload:
    """A presign record of key-<n> for ``user``, made at a fixed time."""
    return PendingUpload(
        object_key=f"key-{n}",
        provider=provider,
        user_id=user,
        file_name=f"file-{n}.txt",
        content_type="text/plain",
        declared_size=n,
        created_at=PRESIGNED_AT,
        expires_at=PRESIGNED_AT + timedelta(minutes=5),
        saved_at=None,
    )


def at_once(calls: Sequence[Callable[[], T]], timeout: float = 60) -> list[T]:
    """Run each call on a thread of its own, all released together; return their results in order."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(n: int) -> None:
        start.wait()
        results[n] = calls[n]()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results

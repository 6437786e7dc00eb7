"""Small in-memory stand-ins for the repository and a storage provider, for the services' unit tests."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from app.repository import AbandonedUpload, KeyState, NewFile, PendingUpload, StoredFile
from app.storage import (
    NO_CHECKSUMS,
    Checksums,
    CorsRule,
    ListedObject,
    ObjectInfo,
    PresignedUpload,
    StagingProvider,
    StorageProvider,
)
from app.storage.base import ObjectChanged


class FakeStorage(StorageProvider):
    """A bucket in a dict: what a client PUT is whatever the test puts there."""

    def __init__(self, name: str, *, public_read: bool = False):
        self.name = name
        self.bucket = f"{name}-bucket"
        self.public_read = public_read
        self.objects: dict[str, ObjectInfo] = {}
        self.heads: list[str] = []
        self.deleted: list[str] = []

    def presign_upload(
        self,
        key: str,
        content_type: str,
        size: int | None,
        expires_in: int,
        *,
        create_only: bool = False,
        in_one_request: bool = False,
        checksums: Checksums = NO_CHECKSUMS,
    ) -> PresignedUpload:
        headers = {"Content-Type": content_type} if content_type else {}
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
        return PresignedUpload(f"https://{self.bucket}.example/{key}?signed", "PUT", headers, expires_at)

    def presign_download(
        self, key: str, expires_in: int, content_disposition: str, content_type: str | None = None
    ) -> str:
        return f"https://{self.bucket}.example/{key}?download&type={content_type}"

    def object_url(self, key: str) -> str:
        return f"https://{self.bucket}.example/{key}"

    def head(self, key: str) -> ObjectInfo | None:
        self.heads.append(key)
        return self.objects.get(key)

    def read_start(self, key: str, length: int) -> ObjectInfo | None:
        info = self.head(key)
        return None if info is None else dataclasses.replace(info, start=info.start[:length])

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        self.objects.pop(key, None)

    def ensure_bucket(self) -> bool:
        raise NotImplementedError

    def bucket_exists(self) -> bool:
        raise NotImplementedError

    def list_objects(self) -> Iterator[list[ListedObject]]:
        raise NotImplementedError

    def set_cors(self, origins: Sequence[str]) -> None:
        raise NotImplementedError

    def get_cors(self) -> list[CorsRule]:
        raise NotImplementedError


class FakeStagingStorage(FakeStorage, StagingProvider):
    """A container whose uploads land in ``staged`` until promoted, as Azure's in blocks do."""

    def __init__(self, name: str):
        super().__init__(name)
        self.staged: dict[str, ObjectInfo] = {}
        #: set to make the staged object change between the check and the promotion
        self.rewritten_after_check = False

    def head_staged(self, key: str) -> ObjectInfo | None:
        return self.staged.get(key)

    def read_staged_start(self, key: str, length: int) -> ObjectInfo | None:
        info = self.staged.get(key)
        return None if info is None else dataclasses.replace(info, start=info.start[:length])

    def promote(self, key: str, checked: ObjectInfo) -> ObjectInfo:
        if self.rewritten_after_check or self.staged.get(key) != checked:
            raise ObjectChanged("the staged upload was written again after it was checked")
        self.objects[key] = self.staged.pop(key)
        return self.objects[key]

    def delete(self, key: str) -> None:
        super().delete(key)
        self.staged.pop(key, None)


class FakeFiles:
    """The ``FileRepository`` calls the services make, kept in dicts."""

    def __init__(self) -> None:
        self.secret = secrets.token_bytes(32)
        self.pending: dict[str, PendingUpload] = {}
        self.claimed: set[str] = set()
        self.swept: set[str] = set()
        self.files: dict[tuple[str, str], StoredFile] = {}
        self.deleted: set[tuple[str, int]] = set()
        #: the services' quota path is proven against PostgreSQL (tests/integration/test_quotas.py)
        self.quotas_enforced = False
        self.rejections: list[tuple[str, int]] = []

    def record_pending_batch(self, records: Sequence[PendingUpload]) -> None:
        for record in records:
            self.pending.setdefault(record.object_key, record)

    def load_secret(self, name: str) -> bytes | None:
        return self.secret if name == "object-key" else None

    def find_pending(self, object_key: str, user_id: str) -> PendingUpload | None:
        return self.pending.get(object_key)

    def find_file(self, provider: str, object_key: str, user_id: str) -> StoredFile | None:
        return self.files.get((provider, object_key))

    def key_state(self, provider: str, object_key: str, user_id: str) -> KeyState:
        pending = self.pending.get(object_key)
        saved = (provider, object_key) in self.files or (pending is not None and pending.saved_at is not None)
        return KeyState(saved=saved, cleaned_up=object_key in self.claimed)

    def save_file(self, provider: str, new: NewFile) -> tuple[StoredFile | None, bool]:
        existing = self.files.get((provider, new.object_key))
        if existing is not None:
            return existing, False
        if new.object_key in self.swept:
            raise AbandonedUpload(new.object_key)
        if new.object_key in self.claimed:
            return None, False
        row = StoredFile(
            len(self.files) + 1,
            provider,
            new.object_key,
            new.file_url,
            new.user_id,
            new.file_name,
            new.content_type,
            new.size_bytes,
            new.etag,
            datetime.now(UTC),
            new.detected_content_type,
            new.checksum_sha256,
            new.content_md5,
        )
        self.files[(provider, new.object_key)] = row
        pending = self.pending.get(new.object_key)
        if pending is not None:
            self.pending[new.object_key] = dataclasses.replace(pending, saved_at=row.uploaded_at)
        return row, True

    def claim_refused(
        self, provider: str, object_key: str, user_id: str, reason: str = "", status: int = 0
    ) -> bool:
        if (provider, object_key) in self.files:
            return False
        self.claimed.add(object_key)
        self.rejections.append((reason, status))
        return True

    def list_files(self, provider: str, user_id: str, before: int, limit: int) -> list[StoredFile]:
        rows = [
            r for (p, _), r in self.files.items() if p == provider and r.user_id == user_id and r.id < before
        ]
        return sorted(rows, key=lambda r: -r.id)[:limit]

    def get_file(self, provider: str, user_id: str, file_id: int) -> StoredFile | None:
        return next(
            (
                r
                for (p, _), r in self.files.items()
                if p == provider and r.id == file_id and r.user_id == user_id
            ),
            None,
        )

    def delete_file(self, provider: str, user_id: str, file_id: int) -> None:
        row = self.get_file(provider, user_id, file_id)
        if row is not None:
            del self.files[(provider, row.object_key)]
            self.deleted.add((provider, file_id))

    def was_deleted(self, provider: str, user_id: str, file_id: int) -> bool:
        return (provider, file_id) in self.deleted


class FakeRecorder:
    """A ``PendingRecorder`` that writes each record at once."""

    def __init__(self, files: FakeFiles):
        self._files = files

    def record(self, record: PendingUpload) -> None:
        self._files.record_pending_batch([record])

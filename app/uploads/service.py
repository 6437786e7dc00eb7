"""The upload flow: issue a key and a signed URL, then record what really arrived."""

from __future__ import annotations

from dataclasses import dataclass

from ..db import release_db
from ..errors import Conflict, Forbidden, NotFound
from ..repository import FileRepository, NewFile, StoredFile
from ..storage import PresignedUpload, StorageProvider, get_provider
from .keys import new_object_key
from .policy import UploadPolicy
from .schemas import PresignRequest


@dataclass(frozen=True)
class IssuedUpload:
    """A key handed to one user and the signed request to upload it with."""

    provider: str
    object_key: str
    upload: PresignedUpload
    file_url: str


def issue_upload(
    provider: StorageProvider,
    repo: FileRepository,
    policy: UploadPolicy,
    user_id: str,
    wanted: PresignRequest,
    expires_in: int,
) -> IssuedUpload:
    """Pick a key, sign its upload and remember who it was issued to."""
    policy.check_presign(wanted.content_type, wanted.file_size, provider.max_single_upload_bytes)
    key = new_object_key(wanted.file_name)
    # Signing is local CPU work; record the key only once it is ready to hand out.
    upload = provider.presign_upload(key, wanted.content_type, wanted.file_size, expires_in)
    repo.record_pending(
        object_key=key,
        provider=provider.name,
        user_id=user_id,
        file_name=wanted.file_name,
        content_type=wanted.content_type,
        declared_size=wanted.file_size,
        expires_at=upload.expires_at,
    )
    return IssuedUpload(provider.name, key, upload, provider.object_url(key))


def _check_owner(row: StoredFile | None, user_id: str, field: str) -> StoredFile:
    if row is None or row.user_id != user_id:
        raise Forbidden(f"{field} belongs to another user")
    return row


def save_upload(
    provider_name: str | None,
    repo: FileRepository,
    policy: UploadPolicy,
    user_id: str,
    key: str,
    field: str = "objectKey",
    fallback_provider: str = "s3",
) -> tuple[StoredFile, bool]:
    """Check the object is in the bucket and belongs to ``user_id``, then record it.

    ``provider_name`` None means "whichever provider issued the key" (the
    guides share one /save-metadata), else ``fallback_provider``.
    Returns the row and whether this call created it (saving twice is fine).
    """
    pending = repo.find_pending(key, user_id)
    if provider_name is None:
        provider_name = pending.provider if pending else fallback_provider
    provider = get_provider(provider_name)
    if pending is None:
        # Rows written before this service existed (by a guide's code) have
        # no pending record; they are still answered, to their owner only.
        existing = repo.find_file(provider.name, key, user_id)
        if existing is not None:
            return _check_owner(existing, user_id, field), False
        raise NotFound(f"{field} was not issued by this service: call presign-upload first")
    if pending.user_id != user_id:
        raise Forbidden(f"{field} was issued to another user")
    if pending.provider != provider.name:
        raise Conflict(
            f"{field} was issued for provider {pending.provider!r}; "
            f"save it with /{pending.provider}/save-metadata"
        )
    if pending.saved_at is not None:
        existing = repo.find_file(provider.name, key, user_id)
        if existing is not None:
            return _check_owner(existing, user_id, field), False

    # Never hold a database connection while waiting on the storage provider.
    release_db()
    info = provider.head(key)
    if info is None:
        raise NotFound(f"no object {key!r} in {provider.name} storage: PUT the file to presignedUrl first")
    # Azure SAS cannot bind size or type, and a client may skip fileSize:
    # what the signature could not enforce is enforced here, before any row.
    problem = policy.problem_with_upload(
        size=info.size,
        content_type=info.content_type,
        declared_size=pending.declared_size,
        presigned_type=pending.content_type,
    )
    if problem is not None:
        provider.delete(key)
        raise problem
    row, created = repo.save_file(
        provider.name,
        NewFile(
            object_key=key,
            file_url=provider.object_url(key),
            user_id=user_id,
            file_name=pending.file_name,
            content_type=info.content_type,
            size_bytes=info.size,
            etag=info.etag,
        ),
    )
    return _check_owner(row, user_id, field), created

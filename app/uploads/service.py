"""The upload flow: issue a key and a signed URL, then record what really arrived."""

from __future__ import annotations

import math
import threading
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..config import PROVIDERS, QuotaLimits
from ..errors import (
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    ServiceUnavailable,
    UnprocessableEntity,
)
from ..repository import (
    AbandonedUpload,
    FileDeleted,
    FileRepository,
    NewFile,
    PendingUpload,
    QuotaExceeded,
    StoredFile,
    Usage,
)
from ..storage import (
    NO_CHECKSUMS,
    Checksums,
    ObjectInfo,
    PresignedUpload,
    ProviderRegistry,
    StagingProvider,
    StorageError,
    StorageProvider,
)
from ..storage.base import SLOW_LINK_BYTES_PER_SECOND, ObjectChanged
from .content import content_problem
from .keys import KeySigner
from .policy import UploadPolicy, normalize_media_type
from .quotas import presign_refusal, save_refusal
from .recorder import PendingRecorder
from .schemas import PresignRequest, SaveRequest

KEY_SECRET_NAME = "object-key"  # noqa: S105 - a row name, not a secret
# save-metadata reads this much of each upload (with its description, in one
# ranged GET in place of a HEAD) to tell what the bytes are.
SNIFF_BYTES = 4096


@dataclass(frozen=True)
class IssuedUpload:
    """A key handed to one user and the signed request to upload it with."""

    provider: str
    object_key: str
    upload: PresignedUpload
    file_url: str


def _cleaned_up(field: str) -> Gone:
    return Gone(f"{field}'s upload was cleaned up (abandoned, or refused at save); presign the file again")


def _not_presigned(field: str, info: ObjectInfo) -> str:
    """Say what arrived for a key whose tags say its presign allowed something else."""
    return (
        f"the uploaded file ({info.size} bytes, {info.content_type or 'no content type'}) is not what "
        f"{field} was presigned for (its type, size or checksum differs); it was deleted"
    )


def _owned_row(row: StoredFile | None, user_id: str, field: str) -> StoredFile:
    """Return a saved row of ``user_id``'s, or refuse one that is someone else's (or hidden by RLS)."""
    if row is None or row.user_id != user_id:
        raise Forbidden(f"{field} belongs to another user")
    return row


class UploadService:
    """Presign and save-metadata, for every provider."""

    def __init__(
        self,
        repo: FileRepository,
        policy: UploadPolicy,
        recorder: PendingRecorder,
        providers: ProviderRegistry,
    ):
        self._repo = repo
        self._policy = policy
        self._recorder = recorder
        self._providers = providers
        self._signer: KeySigner | None = None
        self._signer_lock = threading.Lock()

    @property
    def recorder(self) -> PendingRecorder:
        """The queue of presign records this service writes behind its answers."""
        return self._recorder

    def key_signer(self) -> KeySigner:
        """Return the signer, reading its secret from the database on first use in this process."""
        signer = self._signer
        if signer is None:
            with self._signer_lock:
                if self._signer is None:
                    secret = self._repo.load_secret(KEY_SECRET_NAME)
                    if secret is None:
                        raise ServiceUnavailable(
                            "database schema is not up to date; the operator must apply migrations"
                        )
                    self._signer = KeySigner(secret)
                signer = self._signer
        return signer

    def issue_key(
        self,
        provider: StorageProvider,
        user_id: str,
        wanted: PresignRequest,
        limit: int,
        *,
        in_parts: bool = False,
    ) -> str:
        """Check what is wanted against the policy and pick a key bound to ``user_id``.

        ``limit`` is the most the provider takes through the way this key will
        be uploaded (one request, or parts: ``in_parts``). The key's tags bind
        the declared type, size and checksums.
        """
        if not wanted.content_type and provider.public_read:
            # Nothing would stop an HTML page from landing where anyone can open it.
            raise BadRequest(
                f"contentType is required: the {provider.name} bucket is public, "
                "so an upload's type must be signed"
            )
        self._policy.check_presign(wanted.content_type, wanted.file_size, limit, public=provider.public_read)
        self._policy.check_checksums(
            wanted.checksums.names(),
            provider=provider.name,
            verified=provider.verified_checksums,
            one_per_request=provider.one_checksum_per_request,
            in_parts=in_parts,
        )
        return self.key_signer().issue(
            provider.name,
            user_id,
            wanted.file_name,
            normalize_media_type(wanted.content_type),
            wanted.file_size,
            wanted.checksums,
        )

    def remember(
        self, provider: StorageProvider, user_id: str, wanted: PresignRequest, key: str, expires_at: datetime
    ) -> None:
        """Queue the record of an issued key (written behind the answer; swept if never saved).

        Under quotas the record is written now instead, with what it reserves
        (the declared size, else the most one file may be), or the presign is
        refused naming the limit it would break.
        """
        if not self._repo.quotas_enforced:
            self._queue(provider, user_id, key, wanted, expires_at)
            return
        reserve = wanted.file_size if wanted.file_size is not None else self._policy.max_bytes
        reserved, usage, limits = self._repo.reserve(
            self._record_of(provider, user_id, key, wanted, expires_at), reserve
        )
        if not reserved:
            raise presign_refusal(usage, limits, reserve)

    def usage(self, user_id: str) -> tuple[Usage, QuotaLimits]:
        """The user's usage, and the limits that apply to them (all None when quotas are off)."""
        usage, limits = self._repo.usage(user_id)
        return usage, limits if self._repo.quotas_enforced else QuotaLimits()

    def extend(self, provider: StorageProvider, user_id: str, key: str, expires_at: datetime) -> None:
        """Queue a later expiry for a key just signed for again (a part), so no sweep takes it meanwhile."""
        # A key already recorded only takes the later expiry (INSERT_PENDING_BATCH); the
        # name and "any type" matter only if the first record was lost.
        self._queue(provider, user_id, key, PresignRequest(key.split("-", 1)[-1], "", None), expires_at)

    def _queue(
        self, provider: StorageProvider, user_id: str, key: str, wanted: PresignRequest, expires_at: datetime
    ) -> None:
        self._recorder.record(self._record_of(provider, user_id, key, wanted, expires_at))

    @staticmethod
    def _record_of(
        provider: StorageProvider, user_id: str, key: str, wanted: PresignRequest, expires_at: datetime
    ) -> PendingUpload:
        return PendingUpload(
            object_key=key,
            provider=provider.name,
            user_id=user_id,
            file_name=wanted.file_name,
            content_type=wanted.content_type,
            declared_size=wanted.file_size,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
            saved_at=None,
        )

    def issue_upload(
        self,
        provider: StorageProvider,
        user_id: str,
        wanted: PresignRequest,
        expires_in: int,
        *,
        create_only: bool = False,
        in_one_request: bool = False,
    ) -> IssuedUpload:
        """Pick a key bound to ``user_id``, sign its upload, and queue the presign record.

        The flags say what the client will do, so the URL allows no more:
        ``create_only``, it sends every header answered (S3 and R2 then refuse a
        replacement); ``in_one_request``, it never uploads in blocks (an Azure
        SAS is then create only).
        """
        # A client that says it sends one PUT gets a URL that allows no more; a
        # checksum is checked only for an upload in one request.
        in_one_request = in_one_request or wanted.single_put or bool(wanted.checksums)
        limit = provider.max_one_request_bytes if in_one_request else provider.max_single_upload_bytes
        key = self.issue_key(provider, user_id, wanted, limit)
        upload = provider.presign_upload(
            key,
            wanted.content_type,
            wanted.file_size,
            expires_in,
            create_only=create_only,
            in_one_request=in_one_request,
            checksums=wanted.checksums,
        )
        # Swept no sooner than the URL expires (an Azure SAS for a large file outlives
        # expires_in), nor while a PUT of the declared size that began just before the
        # expiry could still be landing at a slow link.
        landing = 0 if wanted.file_size is None else math.ceil(wanted.file_size / SLOW_LINK_BYTES_PER_SECOND)
        self.remember(provider, user_id, wanted, key, upload.expires_at + timedelta(seconds=landing))
        return IssuedUpload(provider.name, key, upload, provider.object_url(key))

    def check_owner(self, provider: StorageProvider, user_id: str, key: str, field: str = "key") -> None:
        """Refuse a key this service did not issue to ``user_id`` for ``provider``."""
        if not self.key_signer().issued_to(key, provider.name, user_id):
            raise Forbidden(f"{field} was not issued to this user")

    def check_open(self, provider: StorageProvider, user_id: str, key: str, field: str = "key") -> None:
        """Refuse to go on with an upload of ``key`` that is not the caller's, or is over.

        Once a key is saved its object is final: nothing more is signed for
        it (a part, a list, a complete), so no second upload can replace it.
        A key a sweep or a refused save cleaned up is over too.
        """
        self.check_owner(provider, user_id, key, field)
        state = self._repo.key_state(provider.name, key, user_id)
        if state.saved:
            raise Conflict(
                f"{field} was saved already: its upload is final and nothing more is signed for it; "
                "presign a new file to upload again"
            )
        if state.cleaned_up:
            raise _cleaned_up(field)

    def save_upload(
        self, provider_name: str | None, user_id: str, wanted: SaveRequest, fallback_provider: str = "s3"
    ) -> tuple[StoredFile, bool]:
        """Check the object is in the bucket and belongs to ``user_id``, then record it.

        ``provider_name`` None means "whichever provider issued the key" (the
        guides share one /save-metadata), else ``fallback_provider``.
        Returns the row and whether this call created it (saving twice is fine).
        """
        signer = self.key_signer()
        if not signer.is_tagged(wanted.key):
            return self._save_untagged(provider_name, user_id, wanted, fallback_provider)
        # The route's own provider first: one HMAC on the common path.
        order = PROVIDERS if provider_name is None else (provider_name, *PROVIDERS)
        issued_for = next((name for name in order if signer.issued_to(wanted.key, name, user_id)), None)
        if issued_for is None:
            raise Forbidden(f"{wanted.field} was not issued to this user")
        if provider_name not in (None, issued_for):
            raise Conflict(
                f"{wanted.field} was issued for provider {issued_for!r}; "
                f"save it with /{issued_for}/save-metadata"
            )
        return self._save_tagged(self._providers.require(issued_for), user_id, wanted)

    def _save_tagged(
        self, provider: StorageProvider, user_id: str, wanted: SaveRequest
    ) -> tuple[StoredFile, bool]:
        """Save a key whose tags say it was issued to this caller: no presign record needed.

        The answer depends on the key and the object only, never on whether
        the presign record has landed yet, so a save gets the same answer
        whenever it comes.
        """
        key = wanted.key
        # Once a key has its row, saving again answers with it and never
        # touches storage (the object may since have been deleted or replaced).
        existing = self._repo.find_file(provider.name, key, user_id)
        if existing is not None:
            return _owned_row(existing, user_id, wanted.field), False
        info, stager = self._head(provider, user_id, wanted)
        problem: ApiError | None = self._policy.problem_with_stored(
            size=info.size, content_type=info.content_type, public=provider.public_read
        )
        content_type = normalize_media_type(info.content_type or "")
        declared = self.key_signer().declared_checksums(key, content_type, info.size, info.checksums)
        if problem is None and declared is None:
            problem = UnprocessableEntity(_not_presigned(wanted.field, info))
        detected = None
        if problem is None:
            detected, problem = content_problem(
                info.start, info.content_type, self._policy, public=provider.public_read
            )
        if problem is not None:
            return self._refuse(provider, user_id, wanted, problem)
        if stager is not None:
            info = self._promote(stager, wanted, info)
        assert declared is not None
        return self._record(provider, user_id, wanted, key.split("-", 1)[1], info, detected, declared)

    def _refuse(
        self, provider: StorageProvider, user_id: str, wanted: SaveRequest, problem: ApiError
    ) -> tuple[StoredFile, bool]:
        """Delete an object that breaks the rules and raise ``problem``, unless the key has a row now.

        The key is claimed first, as a sweep claims one: a racing save that
        recorded it meanwhile keeps its row and object (and this one answers
        with it), and one that comes later records nothing.
        """
        if not self._repo.claim_refused(
            provider.name, wanted.key, user_id, reason=problem.message, status=problem.status
        ):
            saved = self._repo.find_file(provider.name, wanted.key, user_id)
            if saved is not None:
                return _owned_row(saved, user_id, wanted.field), False
        provider.delete(wanted.key)
        raise problem

    def _save_untagged(
        self, provider_name: str | None, user_id: str, wanted: SaveRequest, fallback_provider: str
    ) -> tuple[StoredFile, bool]:
        """Save a key in the guides' form: its presign record says whose it is."""
        key, field = wanted.key, wanted.field
        pending = self._repo.find_pending(key, user_id)
        if provider_name is None:
            provider_name = pending.provider if pending else fallback_provider
        provider = self._providers.require(provider_name)
        if pending is None:
            # Rows written before this service existed (by a guide's code) have
            # no pending record; they are still answered, to their owner only.
            existing = self._repo.find_file(provider.name, key, user_id)
            if existing is not None:
                return _owned_row(existing, user_id, field), False
            raise NotFound(f"{field} was not issued by this service: call presign-upload first")
        if pending.user_id != user_id:
            raise Forbidden(f"{field} was issued to another user")
        if pending.provider != provider.name:
            raise Conflict(
                f"{field} was issued for provider {pending.provider!r}; "
                f"save it with /{pending.provider}/save-metadata"
            )
        if pending.saved_at is not None:
            existing = self._repo.find_file(provider.name, key, user_id)
            if existing is not None:
                return _owned_row(existing, user_id, field), False

        info, stager = self._head(provider, user_id, wanted)
        # Azure SAS cannot bind size or type, and a client may skip fileSize:
        # what the signature could not enforce is enforced here, before any row.
        problem = self._policy.problem_with_upload(
            size=info.size,
            content_type=info.content_type,
            declared_size=pending.declared_size,
            presigned_type=pending.content_type,
            public=provider.public_read,
        )
        detected = None
        if problem is None:
            detected, problem = content_problem(
                info.start, info.content_type, self._policy, public=provider.public_read
            )
        if problem is not None:
            return self._refuse(provider, user_id, wanted, problem)
        if stager is not None:
            info = self._promote(stager, wanted, info)
        # Keys in the guides' form are never issued with a checksum.
        return self._record(provider, user_id, wanted, pending.file_name, info, detected, NO_CHECKSUMS)

    @staticmethod
    def _promote(provider: StagingProvider, wanted: SaveRequest, checked: ObjectInfo) -> ObjectInfo:
        """Move a checked, staged upload to its key, where no upload URL reaches; return what is there."""
        try:
            return provider.promote(wanted.key, checked)
        except ObjectChanged:
            raise Conflict(
                f"{wanted.field}'s upload was written again while it was being checked; "
                "call save-metadata again once it is finished"
            ) from None

    def _head(
        self, provider: StorageProvider, user_id: str, wanted: SaveRequest
    ) -> tuple[ObjectInfo, StagingProvider | None]:
        """What arrived for the key, and the provider to promote it with when it is staged."""
        info = provider.read_start(wanted.key, SNIFF_BYTES)
        if info is not None:
            return info, None
        if isinstance(provider, StagingProvider):
            staged = provider.read_staged_start(wanted.key, SNIFF_BYTES)
            if staged is not None:
                return staged, provider
            # A racing save may have promoted the staged upload between the two reads.
            info = provider.read_start(wanted.key, SNIFF_BYTES)
            if info is not None:
                return info, None
        # No object: never uploaded, or swept. Which one is worth a read on this path only.
        if self._repo.key_state(provider.name, wanted.key, user_id).cleaned_up:
            raise _cleaned_up(wanted.field)
        raise NotFound(
            f"no object {wanted.key!r} in {provider.name} storage: PUT the file to presignedUrl first"
        )

    def _record(
        self,
        provider: StorageProvider,
        user_id: str,
        wanted: SaveRequest,
        file_name: str,
        info: ObjectInfo,
        detected: str | None,
        checksums: Checksums,
    ) -> tuple[StoredFile, bool]:
        key = wanted.key
        try:
            row, created = self._repo.save_file(
                provider.name,
                NewFile(
                    object_key=key,
                    file_url=provider.object_url(key),
                    user_id=user_id,
                    file_name=file_name,
                    content_type=info.content_type,
                    size_bytes=info.size,
                    etag=info.etag,
                    detected_content_type=detected,
                    checksum_sha256=checksums.sha256,
                    content_md5=checksums.md5,
                ),
            )
        except AbandonedUpload:
            # The sweep deleted this key's object; what is there now landed
            # after it (a PUT that started before its URL expired). Nobody
            # will ever record it: delete it, or a later sweep will.
            with suppress(StorageError):
                provider.delete(key)
            raise Gone(
                f"{wanted.field} was not saved in time and its upload was cleaned up as abandoned; "
                "presign the file again"
            ) from None
        except FileDeleted:
            # Saved once, then its file deleted: what is there now came through a URL
            # replayed since. The key is over; nobody will record that object.
            with suppress(StorageError):
                provider.delete(key)
            raise Gone(
                f"{wanted.field} was saved once and its file deleted since; presign the file again"
            ) from None
        except QuotaExceeded as over:
            # Nothing was written; the object is refused as any other that breaks a rule.
            return self._refuse(provider, user_id, wanted, save_refusal(over.usage, over.limits, info.size))
        return _owned_row(row, user_id, wanted.field), created

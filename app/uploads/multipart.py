"""Uploads in parts for S3, R2 and B2: what Uppy's @uppy/aws-s3 asks a server for.

Two ways in, one set of rules. The sign route (Uppy 6 ``signRequest``) answers
a URL for each of the six S3 requests of an upload: signed S3 URLs for the
parts, the list and the abort, and URLs of the service's own for the create
and the complete, which it does itself (``SignedStep``), so that no replayable
create or unchecked complete is ever handed out. The Companion-style routes
(Uppy 5 ``endpoint``, Uppy 6 ``companionEndpoint``) do the control steps here
and sign only the data-carrying ones. Either way the service picks the key,
binds it to the caller, and checks every later step against it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ..errors import BadRequest, Conflict, Forbidden, NotFound, PayloadTooLarge
from ..storage import MultipartProvider, StorageProvider
from ..storage.base import NoSuchUpload, ObjectExists, UploadedPart
from .policy import UploadPolicy
from .schemas import PresignRequest, SignedStep, SignRequest
from .service import UploadService

T = TypeVar("T")

MiB = 1024**2
MIN_PART_BYTES = 5 * MiB
MAX_PART_BYTES = 5 * 1024**3
MAX_PARTS = 10_000
# S3's largest object; R2 and B2 take as much.
MAX_MULTIPART_BYTES = 5 * 1024**4


def part_size_for(size: int) -> int:
    """The smallest whole-MiB part size (at least 5 MiB) that fits ``size`` bytes in 10,000 parts."""
    return max(MIN_PART_BYTES, math.ceil(size / MAX_PARTS / MiB) * MiB)


class MultipartService:
    """Start, sign, list, complete and abort uploads in parts, for their owners only."""

    def __init__(self, uploads: UploadService, policy: UploadPolicy, max_expires_seconds: int):
        self._uploads = uploads
        self._policy = policy
        self._max_expires = max_expires_seconds

    @property
    def url_seconds(self) -> int:
        """How long each signed URL lives (UPLOAD_URL_EXPIRES_SECONDS)."""
        return self._max_expires

    def _expires(self, asked: int | None) -> int:
        return min(asked or self._max_expires, self._max_expires)

    def _limit(self) -> int:
        return self._policy.limit_for(MAX_MULTIPART_BYTES)

    def part_size(self, declared: int | None) -> int:
        """The part size a client should cut a file of ``declared`` bytes into."""
        return part_size_for(declared if declared is not None else self._limit())

    # --- signRequest mode -------------------------------------------------

    def sign(self, provider: MultipartProvider, user_id: str, request: SignRequest) -> dict[str, Any]:
        """Sign one of the six requests of an upload; the first picks and returns the key."""
        expires = self._expires(request.expires_in)
        if request.operation in ("put_object", "create_multipart"):
            assert request.wanted is not None
            wanted = request.wanted
            if request.operation == "put_object":
                # Uppy sends only Content-Type on this PUT: no header can make it create only.
                upload = self._uploads.issue_upload(provider, user_id, wanted, expires, in_one_request=True)
                return {"url": upload.upload.url, "key": upload.object_key, "headers": upload.upload.headers}
            # The service starts the upload itself and hands out a URL of its own
            # that answers with the upload id: a signed CreateMultipartUpload
            # could be replayed for a second upload under the same key.
            key = self._issue(provider, user_id, wanted, self._limit(), expires)
            upload_id = provider.create_multipart(key, wanted.content_type)
            return {
                "step": self._step("create", provider, user_id, key, upload_id, expires),
                "key": key,
                "uploadId": upload_id,
                "headers": {},
                "partSize": self.part_size(wanted.file_size),
            }
        if request.operation == "abort":
            # Aborting only drops parts: allowed whatever became of the key.
            self._uploads.check_owner(provider, user_id, request.key)
        else:
            self._uploads.check_open(provider, user_id, request.key)
        self._extend(provider, user_id, request.key, expires)
        assert request.upload_id is not None
        if request.operation == "complete":
            # Completed by the service, after it has checked the parts (``complete``),
            # at a URL of its own: the browser never holds a signed complete.
            step = self._step("complete", provider, user_id, request.key, request.upload_id, expires)
            return {"step": step}
        query = {"uploadId": request.upload_id}
        method = {"upload_part": "PUT", "list_parts": "GET", "abort": "DELETE"}
        if request.operation == "upload_part":
            query["partNumber"] = str(request.part_number)
        url = provider.presign_operation(method[request.operation], request.key, expires, query=query)
        return {"url": url}

    def _step(
        self, step: str, provider: MultipartProvider, user_id: str, key: str, upload_id: str, expires: int
    ) -> SignedStep:
        until = int(time.time()) + expires
        signer = self._uploads.key_signer()
        signature = signer.step_signature(step, provider.name, user_id, key, upload_id, until)
        return SignedStep(step, key, upload_id, user_id, until, signature)

    def check_step(self, provider: MultipartProvider, step: SignedStep) -> None:
        """Refuse a step URL this service did not sign as it stands, or one past its expiry."""
        signer = self._uploads.key_signer()
        fields = (step.step, provider.name, step.user_id, step.key, step.upload_id, step.expires)
        if not signer.step_signed(step.signature, *fields):
            raise Forbidden("signature is not this service's: send the URL the sign route answered, as it is")
        if step.expires < time.time():
            raise Forbidden(f"this {step.step} URL has expired; ask the sign route for the step again")

    # --- Companion-style routes -------------------------------------------

    def params(self, provider: MultipartProvider, user_id: str, wanted: PresignRequest) -> dict[str, Any]:
        """Sign a single upload: a size-bounded POST form if the provider takes one, else a PUT."""
        expires = self._max_expires
        if not provider.supports_post_policy or wanted.checksums:
            # Uppy (getUploadParameters) sends the headers answered: the PUT can be write-once.
            # A checksum is a header of the PUT (a declared checksum also pins the length).
            upload = self._uploads.issue_upload(provider, user_id, wanted, expires, create_only=True)
            return {
                "method": "PUT",
                "url": upload.upload.url,
                "fields": {},
                "headers": upload.upload.headers,
                "key": upload.object_key,
            }
        limit = self._policy.limit_for(provider.max_single_upload_bytes)
        key = self._issue(provider, user_id, wanted, limit, expires, in_parts=False)
        most = wanted.file_size if wanted.file_size is not None else limit
        url, fields = provider.presign_post(key, wanted.content_type, most, expires)
        return {"method": "POST", "url": url, "fields": fields, "headers": {}, "key": key}

    def create(self, provider: MultipartProvider, user_id: str, wanted: PresignRequest) -> dict[str, Any]:
        """Start a multipart upload under a new key; return the key, its upload id and the part size."""
        key = self._issue(provider, user_id, wanted, self._limit(), self._max_expires)
        upload_id = provider.create_multipart(key, wanted.content_type)
        return {"key": key, "uploadId": upload_id, "partSize": self.part_size(wanted.file_size)}

    def list_parts(
        self, provider: MultipartProvider, user_id: str, key: str, upload_id: str
    ) -> list[dict[str, Any]]:
        """The parts uploaded so far (to resume after a reload)."""
        self._uploads.check_open(provider, user_id, key)
        return [
            {"PartNumber": p.number, "ETag": p.etag, "Size": p.size}
            for p in self._parts(provider, key, upload_id)
        ]

    def sign_parts(
        self, provider: MultipartProvider, user_id: str, key: str, upload_id: str, numbers: list[int]
    ) -> dict[str, str]:
        """Sign the PUT of each part number."""
        self._uploads.check_open(provider, user_id, key)
        expires = self._max_expires
        self._extend(provider, user_id, key, expires)
        return {
            str(n): provider.presign_operation(
                "PUT", key, expires, query={"partNumber": str(n), "uploadId": upload_id}
            )
            for n in numbers
        }

    def complete(
        self,
        provider: MultipartProvider,
        user_id: str,
        key: str,
        upload_id: str,
        parts: list[tuple[int, str]],
    ) -> dict[str, Any]:
        """Check the client's part list against what was uploaded, then assemble the object."""
        self._uploads.check_open(provider, user_id, key)
        uploaded = {p.number: p for p in self._parts(provider, key, upload_id)}
        for position, (number, etag) in enumerate(parts):
            part = uploaded.get(number)
            if part is None:
                raise BadRequest(f"part {number} was not uploaded: upload it, or leave it out of parts")
            if part.etag != etag:
                raise BadRequest(f"part {number}'s ETag is {part.etag!r}, not {etag!r}")
            if position < len(parts) - 1 and part.size < MIN_PART_BYTES:
                raise BadRequest(
                    f"part {number} is {part.size} bytes; every part but the last must be at least "
                    f"{MIN_PART_BYTES} bytes (5 MiB)"
                )
        total = sum(uploaded[n].size for n, _ in parts)
        if total > self._limit():
            provider.abort_multipart(key, upload_id)
            raise PayloadTooLarge(
                f"the parts add up to {total} bytes, over the {self._limit()} byte upload limit; "
                "the upload was aborted"
            )
        try:
            self._translate(lambda: provider.complete_multipart(key, upload_id, parts), upload_id)
        except ObjectExists:
            # Completed already (a retry), or a save raced these checks: the object stays as it is.
            raise Conflict(
                "an object is already stored under key: its upload was completed; call save-metadata"
            ) from None
        return {"location": provider.object_url(key), "key": key}

    def abort(self, provider: MultipartProvider, user_id: str, key: str, upload_id: str) -> None:
        """Abort the upload and drop its parts; aborting twice is fine."""
        self._uploads.check_owner(provider, user_id, key)
        provider.abort_multipart(key, upload_id)

    def _issue(
        self,
        provider: MultipartProvider,
        user_id: str,
        wanted: PresignRequest,
        limit: int,
        expires: int,
        *,
        in_parts: bool = True,
    ) -> str:
        key = self._uploads.issue_key(provider, user_id, wanted, limit, in_parts=in_parts)
        self._uploads.remember(provider, user_id, wanted, key, datetime.now(UTC) + timedelta(seconds=expires))
        return key

    def _extend(self, provider: MultipartProvider, user_id: str, key: str, expires: int) -> None:
        self._uploads.extend(provider, user_id, key, datetime.now(UTC) + timedelta(seconds=expires))

    def _parts(self, provider: MultipartProvider, key: str, upload_id: str) -> list[UploadedPart]:
        return self._translate(lambda: provider.list_parts(key, upload_id), upload_id)

    @staticmethod
    def _translate(call: Callable[[], T], upload_id: str) -> T:
        try:
            return call()
        except NoSuchUpload:
            raise NotFound(
                f"no multipart upload {upload_id!r} for this key: it was completed, aborted, or never started"
            ) from None


def multipart_provider(provider: StorageProvider) -> MultipartProvider:
    """Return ``provider`` if it uploads in S3 parts (S3, R2, B2)."""
    if not isinstance(provider, MultipartProvider):
        raise NotFound(
            f"{provider.name} has no S3 multipart routes: Azure uploads large files as blocks "
            "through the SAS URL from /azure/presign-upload"
        )
    return provider

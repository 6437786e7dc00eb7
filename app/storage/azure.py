"""Azure Blob Storage: uploads with per-blob, write-only SAS URLs."""

from __future__ import annotations

import base64
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobLeaseClient,
    BlobSasPermissions,
    BlobServiceClient,
    ExponentialRetry,
    generate_blob_sas,
)
from azure.storage.blob import (
    CorsRule as AzureCorsRule,
)

from ..config import AzureSettings
from .base import (
    CORS_ALLOWED_HEADERS,
    CORS_EXPOSED_HEADERS,
    CORS_MAX_AGE_SECONDS,
    CORS_METHODS,
    NO_CHECKSUMS,
    SLOW_LINK_BYTES_PER_SECOND,
    Checksums,
    CorsRule,
    ListedObject,
    ObjectChanged,
    ObjectInfo,
    PresignedUpload,
    StagingProvider,
    StorageError,
    StorageRefused,
    StorageTimeout,
)
from .metering import storage_call

log = logging.getLogger(__name__)

MAX_SAS_SECONDS = 7 * 24 * 3600
# A SAS that uploads blocks needs ``w``, which also allows another Put Blob,
# Set Blob Properties and Lease Blob: it is signed for this staging name, and
# save-metadata copies the committed blob to its key (create only), which no
# SAS the service hands out covers. The prefix is not one a key can start with.
STAGING_PREFIX = ".staging/"
# How long save-metadata waits for Azure to finish copying a staged blob into place.
PROMOTE_WAIT_SECONDS = 10.0


# What Copy Blob answers when a racing save already promoted the blob.
_RACED_COPY_CODES = ("TargetConditionNotMet", "BlobAlreadyExists", "BlobNotFound", "CannotVerifyCopySource")


def staging_name(key: str) -> str:
    """The blob an upload of ``key`` in blocks writes to, until save-metadata promotes it."""
    return STAGING_PREFIX + key


def _split(value: str | list[str] | None) -> list[str]:
    # The SDK reads rules back as comma-joined strings.
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [item.strip() for item in value.split(",") if item.strip()]


class AzureBlobProvider(StagingProvider):
    """One container of one storage account, signed with the account key."""

    # One SAS covers a block blob of up to 50,000 blocks of 4,000 MiB; a
    # single Put Blob takes at most 5,000 MiB, so larger files go in blocks.
    max_single_upload_bytes = 50_000 * 4000 * 1024**2
    max_one_request_bytes = 5000 * 1024**2
    # A single Put Blob checks a Content-MD5 it carries and stores the MD5 of what
    # it wrote (its own, when none was sent); a blob put together from blocks has
    # only the MD5 its Put Block List claims. So an MD5 is checked for uploads in one
    # request, against what the blob reports at save. Azure has no SHA-256.
    verified_checksums = frozenset(("md5",))

    def __init__(
        self,
        settings: AzureSettings,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ):
        self.name = settings.name
        self.bucket = settings.container
        self.public_read = settings.public_read
        self._settings = settings
        self._container_url = f"{settings.account_url}/{settings.container}"
        # SAS over plain HTTP is only allowed where the endpoint itself is
        # plain HTTP (the local emulator); real accounts get HTTPS-only SAS.
        self._sas_protocol = "https" if settings.account_url.startswith("https://") else "https,http"
        service = BlobServiceClient(
            account_url=settings.account_url,
            credential={"account_name": settings.account_name, "account_key": settings.account_key},
            connection_timeout=connect_timeout,
            read_timeout=read_timeout,
            # The SDK's default backoff (15 s, then more) would outlast the
            # server's request timeout; keep the whole retry run to seconds.
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=max_attempts - 1),
        )
        self._service = service
        self._container = service.get_container_client(settings.container)

    def _sas(
        self,
        key: str,
        permission: BlobSasPermissions,
        expires_at: datetime,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> str:
        return generate_blob_sas(
            account_name=self._settings.account_name,
            container_name=self._settings.container,
            blob_name=key,
            account_key=self._settings.account_key,
            permission=permission,
            expiry=expires_at,
            protocol=self._sas_protocol,
            content_disposition=content_disposition,
            content_type=content_type,
        )

    def presign_upload(
        self,
        key: str,
        content_type: str,
        content_length: int | None,
        expires_in: int,
        *,
        create_only: bool = False,
        in_one_request: bool = False,
        checksums: Checksums = NO_CHECKSUMS,
    ) -> PresignedUpload:
        """Sign a Put Blob of ``key``: create and write this one blob, nothing else.

        A SAS cannot bind the content type or length (``rsct`` only changes
        what reads return), so save-metadata checks both after the upload.
        ``in_one_request`` (a single Put Blob, as the Azure guide sends) signs
        create only (``sp=c``): Azure then refuses a second Put Blob over the
        blob, Set Blob Properties and Lease Blob through this SAS. Otherwise the
        SAS also allows ``w``, which block uploads need (Put Block, Put Block
        List) and which allows all three; ``create_only`` changes nothing here
        (see the README on write-once uploads). Either SAS lives long enough
        for the declared size at a slow link. A SAS cannot require a header
        either: ``checksums.md5`` is answered as the ``Content-MD5`` to send
        (Azure then refuses other bytes), and save-metadata compares the MD5
        the blob reports with it, whether the client sent it or not. Only for
        ``in_one_request``: the caller narrows the upload to one Put Blob.
        """
        if content_length is not None:
            expires_in = max(expires_in, math.ceil(content_length / SLOW_LINK_BYTES_PER_SECOND))
        expires_at = datetime.now(UTC) + timedelta(seconds=min(expires_in, MAX_SAS_SECONDS))
        permission = BlobSasPermissions(create=True, write=not in_one_request)
        blob = key if in_one_request else staging_name(key)
        sas = self._sas(blob, permission, expires_at)
        headers = {"Content-Type": content_type, "x-ms-blob-type": "BlockBlob"}
        if checksums.md5:
            headers["Content-MD5"] = checksums.md5
        return PresignedUpload(
            url=f"{self.object_url(blob)}?{sas}", method="PUT", headers=headers, expires_at=expires_at
        )

    def presign_download(
        self,
        key: str,
        expires_in: int,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Sign a read-only SAS for ``key`` (``rscd``/``rsct`` set the response's disposition and type)."""
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
        sas = self._sas(key, BlobSasPermissions(read=True), expires_at, content_disposition, content_type)
        return f"{self.object_url(key)}?{sas}"

    def object_url(self, key: str) -> str:
        """Return the blob's URL without a SAS."""
        return f"{self._container_url}/{quote(key, safe='/~')}"

    def head(self, key: str) -> ObjectInfo | None:
        """Read the blob's properties; ``None`` when it does not exist."""
        with self._translate_errors("get properties"):
            try:
                props = self._container.get_blob_client(key).get_blob_properties()
            except ResourceNotFoundError:
                return None
        return self._info(props)

    @staticmethod
    def _info(props: Any, start: bytes = b"") -> ObjectInfo | None:
        if props.copy is not None and props.copy.status == "pending":
            # A promotion (``promote``) still under way: not yet what was checked.
            raise StorageTimeout("azure is still copying the upload into place; call save-metadata again")
        if props.copy is not None and props.copy.status in ("failed", "aborted"):
            return None  # what a failed promotion left is not an object
        etag = props.etag
        md5 = props.content_settings.content_md5
        return ObjectInfo(
            size=int(props.size),
            content_type=props.content_settings.content_type,
            etag=etag.strip('"') if etag else None,
            start=start,
            # A ranged Get Blob reports the whole blob's MD5 (x-ms-blob-content-md5).
            checksums=Checksums(md5=base64.b64encode(bytes(md5)).decode("ascii")) if md5 else NO_CHECKSUMS,
        )

    def read_start(self, key: str, length: int) -> ObjectInfo | None:
        """Describe the blob and read its first ``length`` bytes: one ranged Get Blob."""
        with self._translate_errors("get blob"):
            try:
                download = self._container.get_blob_client(key).download_blob(offset=0, length=length)
                start = download.readall()
            except ResourceNotFoundError:
                return None
        props = download.properties
        # A ranged Get Blob describes the range: the blob's own size ends Content-Range.
        total = (props.content_range or "").rpartition("/")[2]
        if total.isascii() and total.isdigit():
            props.size = int(total)
        return self._info(props, start[:length])

    def read_staged_start(self, key: str, length: int) -> ObjectInfo | None:
        """Read the staged blob of an upload of ``key`` in blocks; ``None`` when there is none."""
        return self.read_start(staging_name(key), length)

    def head_staged(self, key: str) -> ObjectInfo | None:
        """Describe the staged blob of an upload of ``key`` in blocks; ``None`` when there is none."""
        return self.head(staging_name(key))

    def promote(self, key: str, checked: ObjectInfo) -> ObjectInfo:
        """Copy the staged blob to ``key`` if ``key`` is free and the staged blob is still ``checked``.

        Copy Blob within one account, with ``If-None-Match: *`` on the target
        (a racing save promoted it first: keep that) and ``x-ms-source-if-match``
        on the source (written again after the check: ``ObjectChanged``). Only
        once the key holds the blob is the staged one deleted; the SAS can only
        recreate it, never touch ``key``.
        """
        source = self._container.get_blob_client(staging_name(key))
        target = self._container.get_blob_client(key)
        with self._translate_errors("copy"):
            try:
                copy = target.start_copy_from_url(
                    source.url,
                    source_etag=f'"{checked.etag}"',
                    source_match_condition=MatchConditions.IfNotModified,
                    match_condition=MatchConditions.IfMissing,
                )
                self._wait_for_copy(target, str(copy.get("copy_status") or "") or None)
            except HttpResponseError as exc:
                code = getattr(exc, "error_code", None)
                # Azure says which condition failed (SourceConditionNotMet, TargetConditionNotMet);
                # Azurite and older versions say ConditionNotMet or BlobAlreadyExists.
                if code == "SourceConditionNotMet" or (code == "ConditionNotMet" and exc.status_code == 412):
                    raise ObjectChanged("the staged upload was written again after it was checked") from None
                if code not in _RACED_COPY_CODES:
                    raise
                # Promoted by a racing save: the key is there, or the staged blob it
                # copied from is gone already. What the key holds is the answer (if it
                # holds nothing, nothing was deleted and the save is refused below).
        info = self.head(key)
        if info is None:
            raise StorageError("azure could not copy the upload into place, try again")
        try:
            self._delete_blob(staging_name(key))
        except StorageError:
            # The key holds what was checked; a staging blob left over is an orphan for reconcile.
            log.warning("azure: the staging blob of a promoted upload could not be deleted")
        return info

    def _wait_for_copy(self, target: Any, status: str | None) -> None:
        # Within one account Azure usually copies at once; a large blob may take a while.
        deadline = time.monotonic() + PROMOTE_WAIT_SECONDS
        delay = 0.05
        while status == "pending":
            if time.monotonic() > deadline:
                raise StorageTimeout("azure is still copying the upload into place; call save-metadata again")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            status = target.get_blob_properties().copy.status
        if status not in (None, "success"):
            raise StorageError(f"azure could not copy the upload into place ({status}), try again")

    def delete(self, key: str) -> None:
        """Delete the blob, its snapshots and its staged upload; missing ones are fine."""
        self._delete_blob(key)
        self._delete_blob(staging_name(key))

    def _delete_blob(self, name: str) -> None:
        blob = self._container.get_blob_client(name)
        with self._translate_errors("delete"), suppress(ResourceNotFoundError):
            try:
                blob.delete_blob(delete_snapshots="include")
            except HttpResponseError as exc:
                if getattr(exc, "error_code", None) != "LeaseIdMissing":
                    raise
                # A lease taken through an upload SAS (``w`` allows Lease Blob) must
                # not keep the blob forever: the account key breaks it at once.
                BlobLeaseClient(blob).break_lease(lease_break_period=0)
                blob.delete_blob(delete_snapshots="include")

    def ensure_bucket(self) -> bool:
        """Create the container if it is missing."""
        with self._translate_errors("create container"):
            try:
                self._container.create_container()
            except ResourceExistsError:
                return False
            return True

    def bucket_exists(self) -> bool:
        """Read the container's properties: missing is False; refused credentials are an error."""
        with self._translate_errors("get container properties"):
            try:
                self._container.get_container_properties()
            except ResourceNotFoundError:
                return False
        return True

    def list_objects(self) -> Iterator[list[ListedObject]]:
        """Yield List Blobs pages of up to 1,000 blobs."""
        pages = self._container.list_blobs(results_per_page=1000).by_page()
        while True:
            with self._translate_errors("list blobs"):
                page = next(pages, None)
                items = list(page) if page is not None else None
            if items is None:
                return
            yield [ListedObject(blob.name, int(blob.size), blob.last_modified) for blob in items]

    def set_cors(self, origins: Sequence[str]) -> None:
        """Replace the Blob service's CORS rules (they are per account, not per container)."""
        rule = AzureCorsRule(
            list(origins),
            [*CORS_METHODS, "OPTIONS"],
            allowed_headers=list(CORS_ALLOWED_HEADERS),
            exposed_headers=[*CORS_EXPOSED_HEADERS, "x-ms-*"],
            max_age_in_seconds=CORS_MAX_AGE_SECONDS,
        )
        with self._translate_errors("set CORS"):
            self._service.set_service_properties(cors=[rule])

    def get_cors(self) -> list[CorsRule]:
        """Read the Blob service's CORS rules."""
        with self._translate_errors("get service properties"):
            properties = self._service.get_service_properties()
        return [
            CorsRule(
                origins=tuple(_split(rule.allowed_origins)),
                methods=tuple(_split(rule.allowed_methods)),
                headers=tuple(_split(rule.allowed_headers)),
                exposed=tuple(_split(rule.exposed_headers)),
            )
            for rule in properties.get("cors") or []
        ]

    @contextmanager
    def _translate_errors(self, operation: str) -> Iterator[None]:
        with storage_call("azure", operation), self._translated(operation):
            yield

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except ServiceResponseError:
            log.warning("azure %s timed out or dropped", operation)
            raise StorageTimeout("azure storage did not answer in time, try again") from None
        except ServiceRequestError:
            log.warning("azure %s: endpoint unreachable", operation)
            raise StorageError("azure storage is unreachable, try again") from None
        except HttpResponseError as exc:
            code = getattr(exc, "error_code", None) or exc.status_code
            log.warning("azure %s failed: %s %s", operation, exc.status_code, code)
            if (exc.status_code or 0) >= 500:
                raise StorageError(f"azure storage failed ({exc.status_code}), try again") from None
            raise StorageRefused(f"azure storage refused the request ({code})") from None
        except AzureError as exc:
            log.warning("azure %s failed: %s", operation, type(exc).__name__)
            raise StorageError("azure storage request failed, try again") from None

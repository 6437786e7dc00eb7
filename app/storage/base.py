"""The small interface every storage provider implements.

Views and the upload service see only this module: SDK imports and SDK
error types stay inside the provider modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ApiError

# How fast the slowest client we plan for uploads (2 Mbit/s): a URL for a large
# file lives long enough for it (Azure's SAS), and nothing sweeps an upload
# that may still be landing at that speed.
SLOW_LINK_BYTES_PER_SECOND = 256 * 1024


@dataclass(frozen=True)
class Checksums:
    """Digests of a whole file, in base64 as ``x-amz-checksum-sha256`` and ``Content-MD5`` carry them."""

    sha256: str | None = None
    md5: str | None = None

    def __bool__(self) -> bool:
        return self.sha256 is not None or self.md5 is not None

    def names(self) -> tuple[str, ...]:
        """The algorithms present (``sha256``, ``md5``), as ``verified_checksums`` names them."""
        return tuple(name for name, value in (("sha256", self.sha256), ("md5", self.md5)) if value)


NO_CHECKSUMS = Checksums()


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about a stored object (and its first bytes, when ``read_start`` read them)."""

    size: int
    content_type: str | None
    etag: str | None
    start: bytes = b""
    #: the checksums the object carries as its upload declared them (see ``presign_upload``)
    checksums: Checksums = NO_CHECKSUMS


@dataclass(frozen=True)
class ListedObject:
    """One entry of a bucket listing."""

    key: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class UploadedPart:
    """One part of a multipart upload, as the provider lists it."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class MultipartUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class CorsRule:
    """One CORS rule as a bucket holds it."""

    origins: tuple[str, ...]
    methods: tuple[str, ...]
    headers: tuple[str, ...]
    exposed: tuple[str, ...]

    def allows(self, origin: str, method: str, header: str | None = None) -> bool:
        """Whether a preflight from ``origin`` for ``method`` (sending ``header``) passes this rule."""
        if not any(_matches(pattern, origin) for pattern in self.origins):
            return False
        if method.upper() not in {m.upper() for m in self.methods}:
            return False
        return header is None or any(_matches(pattern.lower(), header.lower()) for pattern in self.headers)


def _matches(pattern: str, value: str) -> bool:
    # S3 and Azure allow one "*" wildcard per entry ("*", "x-amz-*", "https://*.example.com").
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return len(value) >= len(head) + len(tail) and value.startswith(head) and value.endswith(tail)


@dataclass(frozen=True)
class PresignedUpload:
    """A signed request the client sends the bytes with."""

    url: str
    method: str
    # Every header the request must carry for the signature to hold.
    headers: dict[str, str]
    expires_at: datetime


class StorageError(ApiError):
    """The provider failed or could not be reached: not the client's fault."""

    status = 502


class StorageRefused(StorageError):
    """The provider answered, and said no (credentials, permissions, an unsupported call)."""


class NoSuchUpload(StorageRefused):
    """The multipart upload is not there: never started, completed or aborted."""


class ObjectExists(StorageRefused):
    """A create-only write found an object already under the key (412)."""


class ObjectChanged(StorageRefused):
    """The object was written again after it was checked (a conditional copy found another ETag)."""


class StorageTimeout(StorageError):
    """The provider did not answer in time."""

    status = 504


class StorageProvider(ABC):
    """One bucket or container that browsers upload to directly."""

    #: ``s3``, ``r2``, ``b2`` or ``azure``
    name: str
    #: bucket or container name, safe to show to clients
    bucket: str
    #: the most one presigned PUT may carry (S3, R2 and B2: 5 GiB)
    max_single_upload_bytes: int = 5 * 1024**3
    #: the most an ``in_one_request`` upload may carry (one request, no blocks)
    max_one_request_bytes: int = max_single_upload_bytes
    #: objects are readable by anyone who has the URL (a public bucket)
    public_read: bool = False
    #: a ``create_only`` upload URL is refused by the storage once ``key`` exists
    write_once: bool = False
    #: the whole-file checksums (``Checksums.names``) this provider checks an upload in one request against
    verified_checksums: frozenset[str] = frozenset()
    #: the provider refuses a request that carries more than one checksum (R2)
    one_checksum_per_request: bool = False

    @abstractmethod
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
        """Sign a single-request upload of ``key``; every header it binds is in ``headers``.

        ``create_only`` (the client sends every header answered): where the
        provider is ``write_once``, the URL can create the object and never
        replace it. ``in_one_request`` (the client never uploads in blocks or
        parts): a URL that would allow more is narrowed to creating the object.
        ``checksums`` (only those in ``verified_checksums``): the upload must
        carry them, the storage checks the bytes against them, and the object
        reports them afterwards (``ObjectInfo.checksums``).
        """

    @abstractmethod
    def presign_download(
        self,
        key: str,
        expires_in: int,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Sign a GET of ``key``; the response carries the disposition and type given."""

    def download_url(
        self,
        key: str,
        expires_in: int,
        content_disposition: str,
        *,
        content_type: str | None = None,
        plain_ok: bool = True,
    ) -> str:
        """Return a URL that reads ``key``: plain for a public bucket (when ``plain_ok``), else signed.

        A public URL is served with the object's stored headers: only a signed
        one can force ``content_disposition`` (S3 refuses response-header
        overrides on anonymous GETs), so a type browsers run gets a signed one.
        """
        if self.public_read and plain_ok:
            return self.object_url(key)
        return self.presign_download(key, expires_in, content_disposition, content_type)

    @abstractmethod
    def object_url(self, key: str) -> str:
        """Return the unsigned URL of ``key`` (public only if the bucket is)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Describe ``key``, or return ``None`` when it does not exist."""

    @abstractmethod
    def read_start(self, key: str, length: int) -> ObjectInfo | None:
        """Describe ``key`` with its first ``length`` bytes (one ranged GET); ``None`` when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key`` (a ``StagingProvider``: its staged upload too); a missing object is fine."""

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete ``keys``; return those that could not be deleted (missing ones are deleted)."""
        failed = []
        for key in keys:
            try:
                self.delete(key)
            except StorageError:
                failed.append(key)
        return failed

    # Administration, for the `flask storage` commands only; never called per request.

    @abstractmethod
    def ensure_bucket(self) -> bool:
        """Create the bucket or container if it is missing; return whether it was created."""

    @abstractmethod
    def bucket_exists(self) -> bool:
        """Whether the bucket exists; ``StorageError`` when the credentials are refused."""

    @abstractmethod
    def list_objects(self) -> Iterator[list[ListedObject]]:
        """Yield the bucket's objects a page at a time (memory stays one page)."""

    @abstractmethod
    def set_cors(self, origins: Sequence[str]) -> None:
        """Let pages on ``origins`` upload to and download from the bucket directly."""

    @abstractmethod
    def get_cors(self) -> list[CorsRule]:
        """Return the bucket's CORS rules (empty when it has none)."""


class StagingProvider(StorageProvider):
    """A provider whose uploads in blocks land under a staging name until save-metadata promotes them.

    Its upload URLs for blocks could rewrite what they uploaded (an Azure SAS
    with ``w``), so they write elsewhere; save-metadata checks the staged
    object, then ``promote``s it to the key, which no URL reaches. Code asks
    ``isinstance(p, StagingProvider)``.
    """

    @abstractmethod
    def head_staged(self, key: str) -> ObjectInfo | None:
        """Describe the staged upload of ``key``; ``None`` when there is none."""

    @abstractmethod
    def read_staged_start(self, key: str, length: int) -> ObjectInfo | None:
        """Describe the staged upload of ``key`` with its first ``length`` bytes; ``None`` if none."""

    @abstractmethod
    def promote(self, key: str, checked: ObjectInfo) -> ObjectInfo:
        """Copy the staged upload to ``key``, create only and only if it is still ``checked``.

        Returns what ``key`` now holds; ``ObjectChanged`` when the staged object
        was written again after it was checked.
        """


class MultipartProvider(StorageProvider):
    """A provider that takes uploads in S3 parts (S3, R2 and B2): what the multipart service needs.

    Azure has no such thing (its large uploads are blocks through the same
    SAS), so code that works with parts asks ``isinstance(p, MultipartProvider)``
    and never names a concrete class.
    """

    #: browser POST-form uploads with a content-length-range policy (AWS has them; R2 and B2 do not)
    supports_post_policy: bool = False

    @abstractmethod
    def presign_operation(
        self,
        method: str,
        key: str,
        expires_in: int,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Sign one S3 request on ``key`` (a multipart step) for a browser to send."""

    @abstractmethod
    def presign_post(
        self, key: str, content_type: str, max_bytes: int, expires_in: int
    ) -> tuple[str, dict[str, str]]:
        """Sign a browser POST-form upload of ``key``: this type, at most ``max_bytes``."""

    @abstractmethod
    def create_multipart(self, key: str, content_type: str) -> str:
        """Start a multipart upload of ``key``; return its upload id."""

    @abstractmethod
    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """Return the parts uploaded so far, in order; ``NoSuchUpload`` when the upload is gone."""

    @abstractmethod
    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble the object from ``parts`` (number, ETag), in order."""

    @abstractmethod
    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort an unfinished multipart upload and drop its parts; one already gone is fine."""

    @abstractmethod
    def list_multipart_uploads(self) -> Iterator[MultipartUpload]:
        """Yield the bucket's unfinished multipart uploads."""


# What browsers need from a bucket for direct uploads and downloads: the
# verbs (POST and DELETE are multipart's create, complete and abort), the
# headers a signed PUT carries (If-None-Match: a write-once upload), and ETag
# readable (multipart's complete needs it).
CORS_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
CORS_ALLOWED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-MD5",
    "Content-Disposition",
    "If-None-Match",
    "x-amz-*",
    "x-ms-*",
)
CORS_EXPOSED_HEADERS = ("ETag",)
CORS_MAX_AGE_SECONDS = 3600

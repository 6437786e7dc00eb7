"""The small interface every storage provider implements.

Views and the upload service see only this module: SDK imports and SDK
error types stay inside the provider modules.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..errors import ApiError


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD tells about a stored object."""

    size: int
    content_type: str | None
    etag: str | None


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

    @abstractmethod
    def presign_upload(
        self, key: str, content_type: str, content_length: int | None, expires_in: int
    ) -> PresignedUpload:
        """Sign a single-request upload of ``key``."""

    @abstractmethod
    def presign_download(self, key: str, expires_in: int) -> str:
        """Sign a GET of ``key``."""

    @abstractmethod
    def object_url(self, key: str) -> str:
        """Return the unsigned URL of ``key`` (public only if the bucket is)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Describe ``key``, or return ``None`` when it does not exist."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete ``key``; deleting a missing object is not an error."""

    # Administration, for the `flask storage` commands only; never called per request.

    @abstractmethod
    def ensure_bucket(self) -> bool:
        """Create the bucket or container if it is missing; return whether it was created."""

    @abstractmethod
    def set_cors(self, origins: Sequence[str]) -> None:
        """Let pages on ``origins`` upload to and download from the bucket directly."""


# What browsers need from a bucket: the upload and download verbs, any request
# header (Content-Type, x-ms-blob-type, ...), and ETag readable for multipart.
CORS_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
CORS_MAX_AGE_SECONDS = 3600

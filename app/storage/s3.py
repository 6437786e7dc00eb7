"""AWS S3, Cloudflare R2 and Backblaze B2: one S3-compatible class, three configurations."""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.httpsession import get_cert_path

from ..config import S3CompatibleSettings
from .base import (
    CORS_ALLOWED_HEADERS,
    CORS_EXPOSED_HEADERS,
    CORS_MAX_AGE_SECONDS,
    CORS_METHODS,
    NO_CHECKSUMS,
    Checksums,
    CorsRule,
    ListedObject,
    MultipartProvider,
    MultipartUpload,
    NoSuchUpload,
    ObjectExists,
    ObjectInfo,
    PresignedUpload,
    StorageError,
    StorageRefused,
    StorageTimeout,
    UploadedPart,
)
from .http import HttpPool, HttpResponse, TimedOut, Unreachable
from .metering import storage_call
from .sigv4 import SigV4Presigner

log = logging.getLogger(__name__)

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
# A HEAD is signed for this long: it is sent at once.
_HEAD_URL_SECONDS = 60
# A checksummed PUT also carries its checksum as user metadata, signed like the
# checksum itself: S3 returns no checksum on a ranged GET (and has no MD5 to
# return), but every GET returns the object's metadata.
SHA256_METADATA = "x-amz-meta-checksum-sha256"
MD5_METADATA = "x-amz-meta-content-md5"


def quote_key(key: str) -> str:
    """Percent-encode an object key for use in a URL path."""
    return quote(key, safe="/~")


@functools.cache
def _session() -> boto3.session.Session:
    """Return the process's one boto3 session for the S3-compatible clients (not boto3's default one).

    Each session loads and keeps the S3 service model itself: with one per
    client, S3, R2 and B2 cost 37 MB per worker (tracemalloc over create_app;
    13 MB with one session, about 20 MB less peak RSS per worker in bench/);
    clients made from one session share it. Credentials are always passed
    explicitly, so none are read from the environment or ~/.aws.
    """
    return boto3.session.Session()


class S3CompatibleProvider(MultipartProvider):
    """A bucket behind the S3 API, signed with SigV4."""

    def __init__(
        self,
        settings: S3CompatibleSettings,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
        max_pool_connections: int = 10,
    ):
        self.name = settings.name
        self.bucket = settings.bucket
        self.public_read = settings.public_read
        self.write_once = settings.write_once
        # Browser POST-form uploads (policy with content-length-range): AWS has
        # them; R2 does not, and B2's list of supported S3 calls has no POST Object.
        self.supports_post_policy = settings.name == "s3"
        # S3 and R2 check Content-MD5 and x-amz-checksum-sha256 against the body; R2 refuses
        # a request with both. B2's S3 API checks Content-MD5 and takes no x-amz-checksum-*.
        self.verified_checksums = frozenset(("md5",) if settings.name == "b2" else ("sha256", "md5"))
        self.one_checksum_per_request = settings.name == "r2"
        self._settings = settings
        # AWS: the bucket's regional endpoint, so URLs never start on the
        # global host (which redirects, and a browser's CORS PUT cannot follow).
        self._endpoint = settings.endpoint_url or f"https://s3.{settings.region}.amazonaws.com"
        config = Config(
            region_name=settings.region,
            # boto3 still emits SigV2 query strings for some presigned
            # operations unless told; every provider here wants SigV4.
            signature_version="s3v4",
            s3={"addressing_style": settings.addressing_style},
            # The newer "when_supported" default adds CRC32 checksum
            # parameters that R2 and others reject on presigned PUTs.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"total_max_attempts": max_attempts, "mode": "standard"},
            max_pool_connections=max_pool_connections,
            ignore_configured_endpoint_urls=True,  # type: ignore[call-arg]  # newer than the stubs
        )
        self._client = _session().client(
            "s3",
            endpoint_url=self._endpoint,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=config,
        )
        # Where requests for the bucket go, exactly as botocore addresses them.
        if settings.addressing_style == "virtual":
            self._api_base = f"https://{settings.bucket}.s3.{settings.region}.amazonaws.com"
        else:
            self._api_base = f"{self._endpoint}/{settings.bucket}"
        self._url_base = settings.public_base_url or self._api_base
        # Where a POST-form upload goes, as botocore writes it (a virtual-hosted bucket's root is "/").
        self._post_url = self._api_base + ("/" if settings.addressing_style == "virtual" else "")
        self._signer = SigV4Presigner(settings.access_key_id, settings.secret_access_key, settings.region)
        # The hot path (HEAD at every save) goes around botocore: its generic
        # request machinery cost ~1 ms of CPU per HEAD, 58% of a save's time in
        # py-spy under load. A SigV4-presigned HEAD on a kept-alive connection
        # (http.py), with botocore's own CA bundle, is the same request.
        self._max_attempts = max_attempts
        self._http = HttpPool(
            self._api_base,
            size=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            cafile=get_cert_path(True),
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
        """Sign a PUT of ``key`` that must carry this content type (and length, if given).

        An empty ``content_type`` signs none: the browser sends the file's own.
        ``create_only`` (with ``write_once``) signs ``If-None-Match: *``: S3
        and R2 then refuse the PUT (412) once an object exists under ``key``,
        so the URL cannot replace what save-metadata checked, and a PUT that
        leaves the header out does not match the signature (403).
        ``in_one_request`` changes nothing: a presigned PUT is one request.
        ``checksums`` are signed as ``x-amz-checksum-sha256`` and ``Content-MD5``
        (the storage refuses other bytes with BadDigest) and as metadata the
        object keeps (``read_start`` reports them).
        """
        headers = {"Content-Type": content_type} if content_type else {}
        if create_only and self.write_once:
            headers["If-None-Match"] = "*"
        if checksums.sha256:
            headers["x-amz-checksum-sha256"] = headers[SHA256_METADATA] = checksums.sha256
        if checksums.md5:
            headers["Content-MD5"] = headers[MD5_METADATA] = checksums.md5
        signed = dict(headers)
        if content_length is not None:
            # Signed, so the provider refuses a body of any other length.
            signed["Content-Length"] = str(content_length)
        # Byte for byte what boto3's generate_presigned_url("put_object") gives, at a tenth of the cost.
        url = self._signer.presign("PUT", f"{self._api_base}/{quote_key(key)}", signed, expires_in)
        return PresignedUpload(
            url=url,
            method="PUT",
            headers=headers,
            expires_at=datetime.now(UTC) + timedelta(seconds=expires_in),
        )

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
        return self._signer.presign(
            method, f"{self._api_base}/{quote_key(key)}", headers or {}, expires_in, query=query
        )

    def presign_post(
        self, key: str, content_type: str, max_bytes: int, expires_in: int, now: datetime | None = None
    ) -> tuple[str, dict[str, str]]:
        """Sign a browser POST-form upload of ``key``: this type, at most ``max_bytes``.

        The policy binds the exact key, always: botocore would loosen a key
        ending in ``${filename}`` to a prefix match, which our keys never need.
        """
        conditions = [
            {"Content-Type": content_type},
            ["content-length-range", 0, max_bytes],
            {"bucket": self.bucket},
            {"key": key},
        ]
        fields = self._signer.presign_post(
            {"Content-Type": content_type, "key": key}, conditions, expires_in, now=now
        )
        return self._post_url, fields

    def create_multipart(self, key: str, content_type: str) -> str:
        """Start a multipart upload of ``key`` with this content type; return its upload id."""
        with self._translate_errors("CreateMultipartUpload"):
            answer = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type
            )
        return str(answer["UploadId"])

    def list_parts(self, key: str, upload_id: str) -> list[UploadedPart]:
        """Return the parts uploaded so far, in order."""
        parts: list[UploadedPart] = []
        marker = 0
        while True:
            with self._translate_errors("ListParts"):
                answer = self._client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            parts += [
                UploadedPart(int(p["PartNumber"]), str(p["ETag"]).strip('"'), int(p["Size"]))
                for p in answer.get("Parts", [])
            ]
            if not answer.get("IsTruncated"):
                # A part uploaded twice is listed twice by some servers
                # (SeaweedFS); the later upload is the one that counts.
                latest = {part.number: part for part in parts}
                return [latest[number] for number in sorted(latest)]
            marker = int(answer["NextPartNumberMarker"])

    def complete_multipart(self, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
        """Assemble the object from ``parts`` (number, ETag), in order.

        Where ``write_once``, only if no object is there yet (``If-None-Match: *``,
        which S3 and R2 honour on CompleteMultipartUpload): a save that landed
        after the service's own checks cannot be replaced (``ObjectExists``).
        """
        condition = {"IfNoneMatch": "*"} if self.write_once else {}
        with self._translate_errors("CompleteMultipartUpload"):
            self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{etag}"'} for n, etag in parts]},
                **condition,
            )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort the upload and drop its parts; one already gone is fine."""
        with suppress(NoSuchUpload), self._translate_errors("AbortMultipartUpload"):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def list_multipart_uploads(self) -> Iterator[MultipartUpload]:
        """Yield the bucket's unfinished multipart uploads."""
        pages = iter(self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket))
        while True:
            with self._translate_errors("ListMultipartUploads"):
                page = next(pages, None)
            if page is None:
                return
            for upload in page.get("Uploads", []):
                yield MultipartUpload(upload["Key"], upload["UploadId"], upload["Initiated"])

    def presign_download(
        self,
        key: str,
        expires_in: int,
        content_disposition: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """Sign a GET of ``key`` (botocore's ``get_object`` URL, byte for byte)."""
        query = {}
        if content_disposition:
            query["response-content-disposition"] = content_disposition
        if content_type:
            query["response-content-type"] = content_type
        return self._signer.presign(
            "GET", f"{self._api_base}/{quote_key(key)}", {}, expires_in, query=query or None
        )

    def object_url(self, key: str) -> str:
        """Return the unsigned URL of ``key``."""
        return f"{self._url_base}/{quote_key(key)}"

    def head(self, key: str) -> ObjectInfo | None:
        """HEAD ``key``; ``None`` when it does not exist."""
        url = self._signer.presign("HEAD", f"{self._api_base}/{quote_key(key)}", {}, _HEAD_URL_SECONDS)
        response = self._send("HEAD", url[url.index("/", url.index("//") + 2) :])
        if response.status == 404:
            return None
        if response.status != 200:
            log.warning("%s HEAD refused: %s", self.name, response.status)
            raise StorageRefused(f"{self.name} storage refused the request ({response.status})")
        etag = response.headers.get("etag")
        return ObjectInfo(
            size=int(response.headers.get("content-length", "0")),
            content_type=response.headers.get("content-type"),
            etag=etag.strip('"') if etag else None,
            checksums=_checksums(response.headers),
        )

    def read_start(self, key: str, length: int) -> ObjectInfo | None:
        """Describe ``key`` and read its first ``length`` bytes: one ranged GET in place of a HEAD."""
        url = self._signer.presign("GET", f"{self._api_base}/{quote_key(key)}", {}, _HEAD_URL_SECONDS)
        target = url[url.index("/", url.index("//") + 2) :]
        response = self._send("GET", target, {"Range": f"bytes=0-{length - 1}"}, max_body=length)
        if response.status == 404:
            return None
        if response.status == 416:
            # No byte 0: an empty object (S3 answers InvalidRange for any range of one).
            return self.head(key)
        if response.status not in (200, 206):
            log.warning("%s GET refused: %s", self.name, response.status)
            raise StorageRefused(f"{self.name} storage refused the request ({response.status})")
        # 206: "bytes 0-4095/<size>"; 200 (a server that ignored the range): the whole length.
        total = response.headers.get("content-range", "").rpartition("/")[2]
        ranged = response.status == 206 and total.isascii() and total.isdigit()
        size = total if ranged else response.headers.get("content-length")
        etag = response.headers.get("etag")
        return ObjectInfo(
            size=int(size or "0"),
            content_type=response.headers.get("content-type"),
            etag=etag.strip('"') if etag else None,
            start=response.body[:length],
            checksums=_checksums(response.headers),
        )

    def _send(
        self, method: str, target: str, headers: dict[str, str] | None = None, *, max_body: int = 0
    ) -> HttpResponse:
        """Send a presigned request; retry 5xx and connection failures as botocore's standard mode does."""
        with storage_call(self.name, method) as call:
            response = self._send_with_retries(method, target, headers, max_body)
            # Absent (404) and an empty object's range (416) are answers; other 4xx are refusals.
            if response.status >= 400 and response.status not in (404, 416):
                call.refused()
            return response

    def _send_with_retries(
        self, method: str, target: str, headers: dict[str, str] | None, max_body: int
    ) -> HttpResponse:
        for attempt in range(1, self._max_attempts + 1):
            last = attempt == self._max_attempts
            try:
                response = self._http.request(method, target, headers, max_body=max_body)
            except TimedOut:
                if last:
                    log.warning("%s %s timed out", self.name, method)
                    raise StorageTimeout(f"{self.name} storage did not answer in time, try again") from None
            except Unreachable:
                if last:
                    log.warning("%s %s: endpoint unreachable", self.name, method)
                    raise StorageError(f"{self.name} storage is unreachable, try again") from None
            else:
                if response.status < 500:
                    return response
                if last:
                    log.warning("%s %s failed: %s", self.name, method, response.status)
                    raise StorageError(f"{self.name} storage failed ({response.status}), try again")
            # Full jitter, as botocore: up to 0.1 s, 0.2 s, ... capped at 2 s.
            time.sleep(random.uniform(0, min(2.0, 0.1 * 2 ** (attempt - 1))))  # noqa: S311 - jitter, not secrets
        raise AssertionError("unreachable")

    def delete(self, key: str) -> None:
        """Delete ``key``; a missing object is fine."""
        with self._translate_errors("DELETE"):
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _error_code(exc) not in _NOT_FOUND:
                    raise

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete ``keys`` with DeleteObjects, 1,000 per request; return those that failed."""
        failed: list[str] = []
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            try:
                with self._translate_errors("DeleteObjects"):
                    answer = self._client.delete_objects(
                        Bucket=self.bucket,
                        Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                    )
            except StorageError:
                failed.extend(chunk)
                continue
            for error in answer.get("Errors", []):
                if error.get("Code") not in _NOT_FOUND:
                    log.warning("%s could not delete an object: %s", self.name, error.get("Code"))
                    failed.append(error["Key"])
        return failed

    def bucket_exists(self) -> bool:
        """HEAD the bucket: 404 is False; a refusal of the credentials is an error."""
        with self._translate_errors("HEAD bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                    return False
                raise
        return True

    def list_objects(self) -> Iterator[list[ListedObject]]:
        """Yield ListObjectsV2 pages of up to 1,000 objects."""
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, PaginationConfig={"PageSize": 1000}
        )
        iterator = iter(pages)
        while True:
            with self._translate_errors("ListObjectsV2"):
                page = next(iterator, None)
            if page is None:
                return
            yield [
                ListedObject(item["Key"], int(item.get("Size", 0)), item["LastModified"])
                for item in page.get("Contents", [])
            ]

    def ensure_bucket(self) -> bool:
        """Create the bucket if HEAD says it is missing."""
        with self._translate_errors("create bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
                return False
            except ClientError as exc:
                if _error_code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                    raise
            params: dict[str, Any] = {"Bucket": self.bucket}
            region = self._settings.region
            # AWS wants the region spelled out everywhere but us-east-1.
            if self._settings.endpoint_url is None and region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self._client.create_bucket(**params)
            return True

    def set_cors(self, origins: Sequence[str]) -> None:
        """Replace the bucket's CORS rules with one rule for ``origins``."""
        rule = {
            "AllowedOrigins": list(origins),
            "AllowedMethods": list(CORS_METHODS),
            "AllowedHeaders": list(CORS_ALLOWED_HEADERS),
            "ExposeHeaders": list(CORS_EXPOSED_HEADERS),
            "MaxAgeSeconds": CORS_MAX_AGE_SECONDS,
        }
        with self._translate_errors("PutBucketCors"):
            self._client.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [rule]})

    def get_cors(self) -> list[CorsRule]:
        """Read the bucket's CORS rules; a bucket without any has none."""
        with self._translate_errors("GetBucketCors"):
            try:
                answer = self._client.get_bucket_cors(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) == "NoSuchCORSConfiguration":
                    return []
                raise
        return [
            CorsRule(
                origins=tuple(rule.get("AllowedOrigins", ())),
                methods=tuple(rule.get("AllowedMethods", ())),
                headers=tuple(rule.get("AllowedHeaders", ())),
                exposed=tuple(rule.get("ExposeHeaders", ())),
            )
            for rule in answer.get("CORSRules", [])
        ]

    @contextmanager
    def _translate_errors(self, operation: str) -> Iterator[None]:
        with storage_call(self.name, operation), self._translated(operation):
            yield

    @contextmanager
    def _translated(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (ConnectTimeoutError, ReadTimeoutError):
            log.warning("%s %s timed out", self.name, operation)
            raise StorageTimeout(f"{self.name} storage did not answer in time, try again") from None
        except EndpointConnectionError:
            log.warning("%s %s: endpoint unreachable", self.name, operation)
            raise StorageError(f"{self.name} storage is unreachable, try again") from None
        except ClientError as exc:
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            log.warning("%s %s failed: %s %s", self.name, operation, status, _error_code(exc))
            if _error_code(exc) == "NoSuchUpload":
                raise NoSuchUpload(f"{self.name} storage has no such multipart upload") from None
            if status == 412:
                raise ObjectExists(f"{self.name} storage already holds an object under this key") from None
            if status >= 500:
                raise StorageError(f"{self.name} storage failed ({status}), try again") from None
            raise StorageRefused(f"{self.name} storage refused the request ({_error_code(exc)})") from None
        except BotoCoreError as exc:
            log.warning("%s %s failed: %s", self.name, operation, type(exc).__name__)
            raise StorageError(f"{self.name} storage request failed, try again") from None


def _checksums(headers: dict[str, str]) -> Checksums:
    """The checksums a PUT signed by ``presign_upload`` left in the object's metadata."""
    sha256, md5 = headers.get(SHA256_METADATA), headers.get(MD5_METADATA)
    return Checksums(sha256, md5) if sha256 or md5 else NO_CHECKSUMS


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))

"""Parse request bodies into small typed values, refusing bad input with a clear 400."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedElementTree

from ..errors import BadRequest, Forbidden, NotFound
from ..storage.base import NO_CHECKSUMS, Checksums
from .keys import clean_file_name

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # noqa: S105 - an HTTP token, not a password
_QUOTED = r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
# RFC 9110 media type: type "/" subtype *( OWS ";" OWS name=value )
_MEDIA_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}(?:[ \t]*;[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))*$")
MAX_CONTENT_TYPE_LENGTH = 255
MAX_FILE_NAME_LENGTH = 1024
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class PresignRequest:
    """What a client wants to upload."""

    file_name: str
    #: "" when the client named none (Uppy's signRequest): any type, checked at save
    content_type: str
    file_size: int | None
    #: the client sends the file in one PUT, never in blocks (``singlePut``)
    single_put: bool = False
    #: ``checksumSHA256`` and ``contentMD5``, when the client declared them
    checksums: Checksums = NO_CHECKSUMS


@dataclass(frozen=True)
class SaveRequest:
    """Which uploaded object a client wants recorded."""

    key: str
    #: the body field the key came in (objectKey or blobName), for messages
    field: str


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Return a request body as a JSON object, or refuse it saying what it is instead."""
    if not data.strip():
        raise BadRequest("request body is empty: send a JSON object")
    try:
        body = json.loads(data)
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    except ValueError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


def _string(body: dict[str, Any], field: str, max_length: int, *, strip: bool = True) -> str:
    value = body.get(field)
    if value is None:
        raise BadRequest(f"{field} is required")
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string")
    if strip:
        value = value.strip()
    if not value.strip():
        raise BadRequest(f"{field} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON allows lone surrogates ("\ud800"); nothing downstream can store them.
        raise BadRequest(f"{field} is not valid Unicode text") from None
    if len(value) > max_length:
        raise BadRequest(f"{field} is too long (at most {max_length} characters)")
    return value


def parse_presign(body: dict[str, Any], *, type_required: bool = True) -> PresignRequest:
    """Check ``fileName``, ``contentType`` (unless not required and absent) and the optional ``fileSize``."""
    raw_name = _string(body, "fileName", MAX_FILE_NAME_LENGTH)
    file_name = clean_file_name(raw_name)
    if not file_name:
        raise BadRequest("fileName has nothing left once path parts and control characters are removed")
    content_type = ""
    if type_required or body.get("contentType") is not None:
        content_type = _string(body, "contentType", MAX_CONTENT_TYPE_LENGTH)
        if not _MEDIA_TYPE.match(content_type):
            raise BadRequest("contentType is not a valid media type such as image/png")
    size = body.get("fileSize")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise BadRequest("fileSize must be a whole number of bytes")
    if size is not None and size < 0:
        raise BadRequest("fileSize must not be negative")
    single_put = body.get("singlePut", False)
    if not isinstance(single_put, bool):
        raise BadRequest("singlePut must be true or false")
    return PresignRequest(
        file_name=file_name,
        content_type=content_type,
        file_size=size,
        single_put=single_put,
        checksums=parse_checksums(body),
    )


# (field, digest bytes, algorithm, the header that carries it), for messages
_CHECKSUM_FIELDS = {
    "checksumSHA256": (32, "SHA-256", "x-amz-checksum-sha256"),
    "contentMD5": (16, "MD5", "Content-MD5"),
}


def parse_checksums(body: Mapping[str, Any]) -> Checksums:
    """Read the optional ``checksumSHA256`` and ``contentMD5``: base64 of the whole file's digest."""
    sha256, md5 = (_checksum(body.get(field), field) for field in _CHECKSUM_FIELDS)
    return Checksums(sha256, md5) if sha256 or md5 else NO_CHECKSUMS


def _checksum(value: object, field: str) -> str | None:
    if value is None:
        return None
    size, algorithm, header = _CHECKSUM_FIELDS[field]
    shape = f"the base64 of the file's {size}-byte {algorithm} digest, as {header} carries it"
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string: {shape}")
    value = value.strip()
    if re.fullmatch(f"[0-9a-fA-F]{{{2 * size}}}", value):
        raise BadRequest(f"{field} is hexadecimal; send {shape}")
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    # Canonical base64 only (padding, no stray bits): the value is signed into a header as it stands.
    if len(digest) != size or base64.b64encode(digest).decode("ascii") != value:
        raise BadRequest(f"{field} must be {shape} ({len(base64.b64encode(bytes(size)))} characters)")
    return value


def parse_save(body: dict[str, Any], key_fields: tuple[str, ...]) -> SaveRequest:
    """Find the object key under the first of ``key_fields`` present."""
    for field in key_fields:
        if body.get(field) is not None:
            # Exactly as sent: a key is compared byte for byte with the one issued.
            key = _string(body, field, MAX_KEY_LENGTH, strip=False)
            if _has_control_characters(key):
                raise BadRequest(f"{field} contains control characters")
            return SaveRequest(key=key, field=field)
    raise BadRequest(f"{' or '.join(key_fields)} is required")


# --- Multipart (S3, R2, B2): the sign route and the Companion-style routes ---

MAX_UPLOAD_ID_LENGTH = 1024
MAX_PART_NUMBER = 10_000
# Parts one batch request may sign: a bound on one request's work.
MAX_BATCH_PARTS = 100
_SIGNABLE = (
    "PutObject (PUT), CreateMultipartUpload (POST), UploadPart (PUT with uploadId and partNumber), "
    "ListParts (GET with uploadId), CompleteMultipartUpload (POST with uploadId) and "
    "AbortMultipartUpload (DELETE with uploadId)"
)


def _optional_int(body: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{field} must be a whole number from {low} to {high}")
    return value


def _has_control_characters(value: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def _identifier(value: object, field: str, max_length: int, invalid: str) -> str:
    """Check a string a client hands back (a key, an upload id) before it goes into a signature."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{field} is required")
    if len(value) > max_length or _has_control_characters(value) or not _is_unicode(value):
        raise BadRequest(f"{field} {invalid}")
    return value


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON allows
        return False
    return True


def parse_upload_id(value: object, field: str = "uploadId") -> str:
    """Check an S3 upload id: a non-empty string without control characters."""
    return _identifier(value, field, MAX_UPLOAD_ID_LENGTH, "is not a valid upload id")


def parse_part_number(value: object) -> int:
    """Check a part number: 1 to 10,000."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PART_NUMBER:
        raise BadRequest(f"partNumber must be a whole number from 1 to {MAX_PART_NUMBER}")
    return value


def parse_part_numbers(raw: str | None) -> list[int]:
    """Read ``partNumbers=1,2,3`` (at most ``MAX_BATCH_PARTS`` at once)."""
    if not raw:
        raise BadRequest("partNumbers is required, such as partNumbers=1,2,3")
    items = raw.split(",")
    if len(items) > MAX_BATCH_PARTS:
        raise BadRequest(f"partNumbers names at most {MAX_BATCH_PARTS} parts at once")
    return [parse_part_number(item.strip()) for item in items]


def parse_key(value: object, field: str = "key") -> str:
    """Check an object key given back by a client."""
    return _identifier(value, field, MAX_KEY_LENGTH, "is not a key this service issues")


def _wanted(
    body: dict[str, Any], name_field: str, type_field: str, size_field: str, *, type_required: bool = True
) -> PresignRequest:
    """What a client wants to upload, under the field names its protocol uses (checksums: ours)."""
    renamed = {
        "fileName": body.get(name_field),
        "contentType": body.get(type_field),
        "fileSize": body.get(size_field),
        **{field: body.get(field) for field in _CHECKSUM_FIELDS},
    }
    try:
        return parse_presign(renamed, type_required=type_required)
    except BadRequest as exc:
        # Name the fields as this client sent them.
        for ours, theirs in (("fileName", name_field), ("contentType", type_field), ("fileSize", size_field)):
            exc.message = exc.message.replace(ours, theirs)
        raise


@dataclass(frozen=True)
class SignRequest:
    """One S3 request a browser wants signed (Uppy's ``PresignableRequest``)."""

    operation: str
    key: str
    upload_id: str | None
    part_number: int | None
    expires_in: int | None
    #: what the upload will be; only for the first request (put_object, create_multipart)
    wanted: PresignRequest | None


# Uppy's default object key: crypto.randomUUID() + "-" + the file's name.
_UPPY_KEY = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}-(.+)", re.DOTALL)


def parse_sign(body: dict[str, Any], bucket: str) -> SignRequest:
    """Read ``{method, key, uploadId?, partNumber?, expiresIn?}``, as Uppy 6 sends it.

    The first request of an upload may also carry ``contentType``,
    ``fileName`` (else the name in Uppy's ``<uuid>-<name>`` key) and
    ``fileSize``. Uppy itself sends none of them: the upload is then signed
    for any type and length, and save-metadata checks what arrived.
    """
    method = body.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequest("method is required")
    if body.get("bucket") not in (None, bucket):
        raise BadRequest(f"bucket must be {bucket!r}, the only bucket this route signs for")
    key = parse_key(body.get("key"))
    upload_id = None if body.get("uploadId") is None else parse_upload_id(body.get("uploadId"))
    part_number = None if body.get("partNumber") is None else parse_part_number(body.get("partNumber"))
    expires_in = _optional_int(body, "expiresIn", 1, 7 * 24 * 3600)
    method = method.upper()
    if upload_id is None and part_number is None and method in ("PUT", "POST"):
        # The first request of an upload: the service picks the key, so the
        # client's key is only a suggested file name.
        if body.get("fileName") is None:
            uppy_key = _UPPY_KEY.fullmatch(key)
            body = {**body, "fileName": uppy_key.group(1) if uppy_key else key}
        wanted = _wanted(body, "fileName", "contentType", "fileSize", type_required=False)
        first = "put_object" if method == "PUT" else "create_multipart"
        return SignRequest(first, key, None, None, expires_in, wanted)
    operations = {("PUT", True): "upload_part", ("GET", False): "list_parts", ("POST", False): "complete",
                  ("DELETE", False): "abort"}  # fmt: skip
    operation = operations.get((method, part_number is not None)) if upload_id is not None else None
    if operation is None:
        raise BadRequest(f"this route signs {_SIGNABLE} only; not {method}" + (
            "" if upload_id is None else " with this uploadId and partNumber"))  # fmt: skip
    return SignRequest(operation, key, upload_id, part_number, expires_in, None)


def parse_companion_file(values: dict[str, Any]) -> PresignRequest:
    """Read ``filename``, ``type`` and the optional ``size`` of a Companion-style request.

    A checksum may come as a field of its own or in Uppy's file metadata:
    ``metadata[checksumSHA256]`` in /s3/params' query, ``metadata`` in a body.
    """
    metadata = values.get("metadata")
    for field in _CHECKSUM_FIELDS:
        if values.get(field) is None:
            nested = metadata.get(field) if isinstance(metadata, dict) else None
            found = values.get(f"metadata[{field}]", nested)
            if found is not None:
                values = {**values, field: found}
    size = values.get("size")
    if isinstance(size, str):
        if not (size.isascii() and size.isdigit() and len(size) <= 16):
            raise BadRequest("size must be a whole number of bytes")
        values = {**values, "size": int(size)}
    return _wanted(values, "filename", "type", "size")


def parse_signed_request(values: dict[str, Any]) -> PresignRequest:
    """Read Backblaze's article's ``?name=<file name>``: no type or size is named, so none is signed."""
    return _wanted(values, "name", "contentType", "fileSize", type_required=False)


@dataclass(frozen=True)
class SignedStep:
    """A step of an upload in parts the service answers itself, as its signed URL names it."""

    step: str
    key: str
    upload_id: str
    user_id: str
    #: Unix time after which the URL is refused
    expires: int
    signature: str


SERVICE_STEPS = ("create", "complete")
_SIGNATURE = re.compile(r"[0-9a-f]{32}")
MAX_USER_ID_LENGTH = 255


def parse_signed_step(step: str, query: Mapping[str, str]) -> SignedStep:
    """Read the query of a URL the sign route answered for a step the service takes itself."""
    if step not in SERVICE_STEPS:
        raise NotFound(f"the service answers the steps {' and '.join(SERVICE_STEPS)} only, not {step!r}")
    signature = query.get("signature")
    if not signature:
        raise Forbidden("signature is required: send the step to the URL the sign route answered, as it is")
    if not _SIGNATURE.fullmatch(signature):
        raise Forbidden("signature is not this service's: send the URL the sign route answered, as it is")
    expires = query.get("expires", "")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12):
        raise BadRequest("expires must be the Unix time the sign route put in the URL")
    user_id = _identifier(query.get("user"), "user", MAX_USER_ID_LENGTH, "is not a user id")
    return SignedStep(
        step,
        parse_key(query.get("key")),
        parse_upload_id(query.get("uploadId")),
        user_id,
        int(expires),
        signature,
    )


def parse_complete_multipart(body: bytes) -> list[tuple[int, str]]:
    """Read S3's ``<CompleteMultipartUpload>`` XML into (part number, ETag) pairs, as ``parse_parts`` does.

    defusedxml refuses a DTD and every entity: the body comes from anyone holding the URL.
    """
    try:
        root = DefusedElementTree.fromstring(body, forbid_dtd=True)
    except (ElementTree.ParseError, DefusedXmlException, LookupError, ValueError):
        # LookupError, ValueError: an encoding the XML declaration names that Python lacks or refuses.
        raise BadRequest(
            "the body must be S3's CompleteMultipartUpload XML, without a DTD or entities"
        ) from None
    if _local_name(root.tag) != "CompleteMultipartUpload":
        raise BadRequest(f"the body must be a CompleteMultipartUpload document, not {_local_name(root.tag)}")
    parts = []
    for part in root:
        if _local_name(part.tag) != "Part":
            continue
        fields = {_local_name(child.tag): (child.text or "").strip() for child in part}
        parts.append({"PartNumber": fields.get("PartNumber"), "ETag": fields.get("ETag")})
    return parse_parts({"parts": parts})


def _local_name(tag: object) -> str:
    # S3's SDKs put the elements in S3's namespace; Uppy does not.
    return str(tag).rsplit("}", 1)[-1]


def parse_parts(body: dict[str, Any]) -> list[tuple[int, str]]:
    """Read ``{parts: [{PartNumber, ETag}, ...]}``: ascending part numbers, each once."""
    parts = body.get("parts")
    if not isinstance(parts, list) or not parts:
        raise BadRequest("parts is required: a list of {PartNumber, ETag}, one per uploaded part")
    if len(parts) > MAX_PART_NUMBER:
        raise BadRequest(f"parts lists at most {MAX_PART_NUMBER} parts")
    result: list[tuple[int, str]] = []
    for item in parts:
        if not isinstance(item, dict):
            raise BadRequest("each of parts must be an object {PartNumber, ETag}")
        number = parse_part_number(item.get("PartNumber"))
        etag = item.get("ETag")
        if not isinstance(etag, str) or not etag.strip('" ') or len(etag) > 256:
            raise BadRequest(f"part {number} needs its ETag, as the PUT of the part answered it")
        if result and number <= result[-1][0]:
            raise BadRequest("parts must be in ascending PartNumber order, each part once")
        result.append((number, etag.strip().strip('"')))
    return result

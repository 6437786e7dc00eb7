"""Parse request bodies into small typed values, refusing bad input with a clear 400."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from flask import request

from ..errors import BadRequest
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
    content_type: str
    file_size: int | None


@dataclass(frozen=True)
class SaveRequest:
    """Which uploaded object a client wants recorded."""

    key: str
    #: the body field the key came in (objectKey or blobName), for messages
    field: str


def json_object() -> dict[str, Any]:
    """Return the request's JSON body, which must be an object.

    The body is parsed whatever its Content-Type (curl users often forget
    the header), and at most ``MAX_CONTENT_LENGTH`` bytes are read.
    """
    data = request.get_data(cache=True)
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


def _string(body: dict[str, Any], field: str, max_length: int) -> str:
    value = body.get(field)
    if value is None:
        raise BadRequest(f"{field} is required")
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string")
    value = value.strip()
    if not value:
        raise BadRequest(f"{field} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON allows lone surrogates ("\ud800"); nothing downstream can store them.
        raise BadRequest(f"{field} is not valid Unicode text") from None
    if len(value) > max_length:
        raise BadRequest(f"{field} is too long (at most {max_length} characters)")
    return value


def parse_presign(body: dict[str, Any]) -> PresignRequest:
    """Check ``fileName``, ``contentType`` and the optional ``fileSize``."""
    raw_name = _string(body, "fileName", MAX_FILE_NAME_LENGTH)
    file_name = clean_file_name(raw_name)
    if not file_name:
        raise BadRequest("fileName has nothing left once path parts and control characters are removed")
    content_type = _string(body, "contentType", MAX_CONTENT_TYPE_LENGTH)
    if not _MEDIA_TYPE.match(content_type):
        raise BadRequest("contentType is not a valid media type such as image/png")
    size = body.get("fileSize")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        raise BadRequest("fileSize must be a whole number of bytes")
    if size is not None and size < 0:
        raise BadRequest("fileSize must not be negative")
    return PresignRequest(file_name=file_name, content_type=content_type, file_size=size)


def parse_save(body: dict[str, Any], key_fields: tuple[str, ...]) -> SaveRequest:
    """Find the object key under the first of ``key_fields`` present."""
    for field in key_fields:
        if body.get(field) is not None:
            key = _string(body, field, MAX_KEY_LENGTH)
            if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
                raise BadRequest(f"{field} contains control characters")
            return SaveRequest(key=key, field=field)
    raise BadRequest(f"{' or '.join(key_fields)} is required")

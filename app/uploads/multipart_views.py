"""Routes for uploads in parts (S3, R2, B2), mounted at ``/<provider>/s3`` for each of the three.

``POST /P/s3/sign`` serves Uppy 6's ``signRequest`` mode, and
``POST /P/s3/sign/create|complete`` the two steps of it the service takes
itself (at URLs the sign route answers); the rest are the
routes of Uppy's Companion (``packages/@uppy/companion/src/server/controllers/s3.ts``),
so Uppy 5's ``endpoint: <service>/P`` and Uppy 6's ``companionEndpoint``
work against this service unchanged. Starting an upload counts against the
presign rate limit; every later step against the (higher) parts limit.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape

from flask import Blueprint, Response, jsonify, request, url_for
from werkzeug.exceptions import RequestEntityTooLarge

from .. import components
from ..auth import current_user_id
from ..errors import BadRequest
from ..ratelimit import check_rate, rate_limited
from ..storage import MultipartProvider
from .multipart import MultipartService, multipart_provider
from .schemas import (
    parse_companion_file,
    parse_complete_multipart,
    parse_key,
    parse_part_number,
    parse_part_numbers,
    parse_parts,
    parse_sign,
    parse_signed_step,
    parse_upload_id,
)
from .views import json_object

multipart_bp = Blueprint("multipart", __name__)

# A complete names up to 10,000 parts, each about 80 bytes of JSON: more than
# the 64 KiB every other body is held to.
MAX_COMPLETE_BODY_BYTES = 1024**2


def _multipart() -> MultipartService:
    return components.multipart()


def _provider(name: str) -> MultipartProvider:
    return multipart_provider(components.get_provider(name))


def _key() -> str:
    return parse_key(request.args.get("key"))


@multipart_bp.post("/sign")
def sign(provider: str) -> tuple[Response, int]:
    """Sign one S3 request of an upload: ``{method, key, uploadId?, partNumber?, contentType?, ...}``."""
    # Counted before anything else, as on every route: a caller with a bad
    # token or a bad body is limited (by address) like everyone else. The
    # scope depends on the body: the first request of an upload is a presign.
    try:
        body = json_object()
    except (BadRequest, RequestEntityTooLarge):
        check_rate("presign")
        current_user_id()  # a bad token is told before a bad body, as on every route
        raise
    check_rate("parts" if body.get("uploadId") is not None else "presign")
    user_id = current_user_id()
    storage = _provider(provider)
    wanted = parse_sign(body, storage.bucket)
    answer = _multipart().sign(storage, user_id, wanted)
    step = answer.pop("step", None)
    if step is not None:
        query = {"key": step.key, "uploadId": step.upload_id, "user": step.user_id, "expires": step.expires}
        query["signature"] = step.signature
        answer["url"] = url_for(".signed_step", provider=provider, step=step.step, _external=True, **query)
    return jsonify(answer), 200


S3_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


def _s3_xml(root: str, fields: dict[str, str]) -> Response:
    """Answer as S3 would: one element of text fields, in S3's namespace."""
    inner = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields.items())
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{S3_XMLNS}">{inner}</{root}>'
    return Response(body, 200, mimetype="application/xml")


@multipart_bp.post("/sign/<step>")
@rate_limited("parts")
def signed_step(provider: str, step: str) -> Response:
    """Answer a create or complete the sign route signed for the service itself, in S3's XML.

    The URL is the credential (no bearer token: Uppy sends it as it would
    to S3); its signature binds the user, key, upload id, step and expiry.
    """
    storage = _provider(provider)
    signed = parse_signed_step(step, request.args)
    service = _multipart()
    service.check_step(storage, signed)
    if signed.step == "create":
        # Replaying this URL answers the same upload id: no second upload is ever started.
        fields = {"Bucket": storage.bucket, "Key": signed.key, "UploadId": signed.upload_id}
        return _s3_xml("InitiateMultipartUploadResult", fields)
    request.max_content_length = MAX_COMPLETE_BODY_BYTES
    parts = parse_complete_multipart(request.get_data())
    done = service.complete(storage, signed.user_id, signed.key, signed.upload_id, parts)
    fields = {"Location": done["location"], "Bucket": storage.bucket, "Key": signed.key}
    return _s3_xml("CompleteMultipartUploadResult", fields)


@multipart_bp.get("/params")
@rate_limited("presign")
def params(provider: str) -> tuple[Response, int]:
    """Sign a single upload: ``?filename=&type=&size=`` → ``{method, url, fields, headers, key}``."""
    user_id = current_user_id()
    storage = _provider(provider)
    wanted = parse_companion_file(request.args.to_dict())
    return jsonify(_multipart().params(storage, user_id, wanted)), 200


@multipart_bp.post("/multipart")
@rate_limited("presign")
def create(provider: str) -> tuple[Response, int]:
    """Start an upload in parts: ``{filename, type, metadata?, size?}`` → ``{key, uploadId, partSize}``."""
    user_id = current_user_id()
    storage = _provider(provider)
    wanted = parse_companion_file(json_object())
    return jsonify(_multipart().create(storage, user_id, wanted)), 200


@multipart_bp.get("/multipart/<upload_id>")
@rate_limited("parts")
def list_parts(provider: str, upload_id: str) -> tuple[Response, int]:
    """The parts uploaded so far: ``[{PartNumber, ETag, Size}]``."""
    user_id = current_user_id()
    storage = _provider(provider)
    parts = _multipart().list_parts(storage, user_id, _key(), parse_upload_id(upload_id))
    return jsonify(parts), 200


@multipart_bp.get("/multipart/<upload_id>/batch")
@rate_limited("parts")
def sign_batch(provider: str, upload_id: str) -> tuple[Response, int]:
    """Sign several parts: ``?key=&partNumbers=1,2,3`` → ``{presignedUrls: {"1": url, ...}}``."""
    user_id = current_user_id()
    storage = _provider(provider)
    numbers = parse_part_numbers(request.args.get("partNumbers"))
    urls = _multipart().sign_parts(storage, user_id, _key(), parse_upload_id(upload_id), numbers)
    return jsonify({"presignedUrls": urls}), 200


@multipart_bp.get("/multipart/<upload_id>/<part_number>")
@rate_limited("parts")
def sign_part(provider: str, upload_id: str, part_number: str) -> tuple[Response, int]:
    """Sign one part: ``?key=`` → ``{url, expires}``."""
    user_id = current_user_id()
    storage = _provider(provider)
    number = parse_part_number(part_number)
    service = _multipart()
    urls = service.sign_parts(storage, user_id, _key(), parse_upload_id(upload_id), [number])
    body: dict[str, Any] = {"url": urls[str(number)], "expires": service.url_seconds}
    return jsonify(body), 200


@multipart_bp.post("/multipart/<upload_id>/complete")
@rate_limited("parts")
def complete(provider: str, upload_id: str) -> tuple[Response, int]:
    """Assemble the object: ``{parts: [{PartNumber, ETag}]}`` → ``{location, key}``; then save-metadata."""
    user_id = current_user_id()
    storage = _provider(provider)
    key = _key()
    request.max_content_length = MAX_COMPLETE_BODY_BYTES
    parts = parse_parts(json_object())
    return jsonify(_multipart().complete(storage, user_id, key, parse_upload_id(upload_id), parts)), 200


@multipart_bp.delete("/multipart/<upload_id>")
@rate_limited("parts")
def abort(provider: str, upload_id: str) -> tuple[Response, int]:
    """Abort the upload and drop its parts: ``{}``."""
    user_id = current_user_id()
    storage = _provider(provider)
    _multipart().abort(storage, user_id, _key(), parse_upload_id(upload_id))
    return jsonify({}), 200

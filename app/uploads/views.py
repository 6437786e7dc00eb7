"""The upload routes, written once and registered once per provider.

``create_app`` registers ``bp`` four times (``/s3``, ``/r2``, ``/b2``,
``/azure``) with ``url_defaults={"provider": ...}``; ``guides_bp`` keeps the
guides' own paths working.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, request
from werkzeug.wrappers import Response as BaseResponse

from .. import components
from ..auth import current_user_id
from ..ratelimit import rate_limited
from ..repository import StoredFile
from .files import file_fields, parse_limit
from .schemas import parse_json_object, parse_presign, parse_save, parse_signed_request
from .service import IssuedUpload

bp = Blueprint("uploads", __name__)
guides_bp = Blueprint("guides", __name__)
usage_bp = Blueprint("usage", __name__)

# Backblaze's direct-upload article signs its PUT for 60 seconds.
SIGNED_REQUEST_SECONDS = 60


def json_object() -> dict[str, Any]:
    """Return the request's JSON body, which must be an object.

    The body is parsed whatever its Content-Type (curl users often forget
    the header), and at most ``MAX_CONTENT_LENGTH`` bytes are read.
    """
    return parse_json_object(request.get_data(cache=True))


def presign_body(issued: IssuedUpload) -> dict[str, Any]:
    """Describe an issued upload the same way for every provider."""
    body: dict[str, Any] = {
        "success": True,
        "provider": issued.provider,
        "presignedUrl": issued.upload.url,
        "method": issued.upload.method,
        "headers": issued.upload.headers,
        "objectKey": issued.object_key,
        "publicFileUrl": issued.file_url,
        "expiresAt": issued.upload.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if issued.provider == "azure":
        # The Azure guide's names for the same three things.
        body.update(sasUrl=issued.upload.url, blobName=issued.object_key, fileUrl=issued.file_url)
    return body


def file_body(row: StoredFile) -> dict[str, Any]:
    """Describe a saved file, with a fresh link to download it."""
    return {**file_fields(row), "downloadUrl": components.files().download_url(row)}


def presign(provider_name: str, *, own_route: bool) -> tuple[Response, int]:
    """Issue a key and a signed upload request for ``provider_name``.

    On the service's own routes the client sends every header answered, so
    the URL is create only where a header does it (S3, R2). The guides'
    routes keep the guides' exact PUT (only Content-Type, and x-ms-blob-type
    for Azure), which is always one request: an Azure SAS there is create
    only (no blocks, no replacement, no lease).
    """
    user_id = current_user_id()
    provider = components.get_provider(provider_name)
    wanted = parse_presign(json_object())
    expires_in = components.settings().upload_url_expires_seconds
    issued = components.uploads().issue_upload(
        provider, user_id, wanted, expires_in, create_only=own_route, in_one_request=not own_route
    )
    return jsonify(presign_body(issued)), 200


def save(provider_name: str | None) -> tuple[Response, int]:
    """Record an uploaded object; 201 when new, 200 when already recorded.

    ``provider_name`` None is the guides' shared /save-metadata: the key's
    own provider decides the table.
    """
    user_id = current_user_id()
    if provider_name is not None:
        components.get_provider(provider_name)
    body = json_object()
    key_fields = ("objectKey",) if provider_name not in ("azure", None) else ("objectKey", "blobName")
    wanted = parse_save(body, key_fields)
    # A key nobody issued has no provider on record; the Azure guide sends blobName.
    fallback = "azure" if wanted.field == "blobName" else components.settings().default_provider
    row, created = components.uploads().save_upload(provider_name, user_id, wanted, fallback)
    body = {"success": True, "file": file_body(row)}
    return jsonify(body), 201 if created else 200


@bp.post("/presign-upload")
@rate_limited("presign")
def presign_upload(provider: str) -> tuple[Response, int]:
    """Sign an upload: ``{fileName, contentType, fileSize?}``."""
    return presign(provider, own_route=True)


@bp.post("/save-metadata")
@rate_limited("save")
def save_metadata(provider: str) -> tuple[Response, int]:
    """Record an uploaded object: ``{objectKey}`` (Azure also takes ``blobName``)."""
    return save(provider)


@bp.get("/files")
@rate_limited("files")
def list_files(provider: str) -> tuple[Response, int]:
    """The caller's files, newest first: ``?limit=1..100&cursor=<nextCursor>``."""
    user_id = current_user_id()
    storage = components.get_provider(provider)
    limit = parse_limit(request.args.get("limit"))
    page = components.files().list_files(storage, user_id, limit, request.args.get("cursor"))
    files = [file_body(row) for row in page.files]
    return jsonify({"success": True, "files": files, "nextCursor": page.next_cursor}), 200


@bp.get("/files/<file_id>")
@rate_limited("files")
def get_file(provider: str, file_id: str) -> tuple[Response, int]:
    """One of the caller's files, with a fresh ``downloadUrl``."""
    storage = components.get_provider(provider)
    row = components.files().get_file(storage, current_user_id(), file_id)
    return jsonify({"success": True, "file": file_body(row)}), 200


@bp.get("/files/<file_id>/download")
@rate_limited("files")
def download_file(provider: str, file_id: str) -> BaseResponse:
    """Redirect (302) to a fresh download link for one of the caller's files."""
    service = components.files()
    row = service.get_file(components.get_provider(provider), current_user_id(), file_id)
    return redirect(service.download_url(row), code=302)


@bp.delete("/files/<file_id>")
@rate_limited("files")
def delete_file(provider: str, file_id: str) -> tuple[str, int]:
    """Delete the object, then its row; 204, also when it was already deleted."""
    components.files().delete_file(components.get_provider(provider), current_user_id(), file_id)
    return "", 204


# The guides' paths, answered by the same code.


@guides_bp.post("/presign-upload")
@rate_limited("presign")
def guide_presign_upload() -> tuple[Response, int]:
    """The S3 and R2 guides' presign route, for ``DEFAULT_PROVIDER``."""
    return presign(components.settings().default_provider, own_route=False)


@guides_bp.post("/save-metadata")
@rate_limited("save")
def guide_save_metadata() -> tuple[Response, int]:
    """The guides' shared save route: the key's own provider decides the table."""
    return save(None)


@guides_bp.post("/presign-b2-upload")
@rate_limited("presign")
def guide_presign_b2_upload() -> tuple[Response, int]:
    """The B2 guide's presign route."""
    return presign("b2", own_route=False)


@guides_bp.post("/save-b2-metadata")
@rate_limited("save")
def guide_save_b2_metadata() -> tuple[Response, int]:
    """The B2 guide's save route."""
    return save("b2")


@guides_bp.post("/generate-upload-sas")
@rate_limited("presign")
def guide_generate_upload_sas() -> tuple[Response, int]:
    """The Azure guide's SAS route."""
    return presign("azure", own_route=False)


@guides_bp.get("/signed-request")
@rate_limited("presign")
def guide_signed_request() -> tuple[Response, int]:
    """Backblaze's direct-upload article: ``?name=<file name>`` → ``{url, objectKey, ...}`` for B2.

    The article's browser code sends ``fetch(url, {method: 'PUT', body: file})``:
    no type is bound (the browser sends the file's own), and save-metadata
    checks what arrived.
    """
    user_id = current_user_id()
    provider = components.get_provider("b2")
    wanted = parse_signed_request(request.args.to_dict())
    expires_in = min(SIGNED_REQUEST_SECONDS, components.settings().upload_url_expires_seconds)
    # The article's PUT carries nothing the service could add: only one request.
    issued = components.uploads().issue_upload(provider, user_id, wanted, expires_in, in_one_request=True)
    return jsonify({"url": issued.upload.url, **presign_body(issued)}), 200


def _quota_numbers(
    bytes_: int | None, files: int | None, unsaved_bytes: int | None, unsaved: int | None
) -> dict[str, int | None]:
    return {"bytes": bytes_, "files": files, "unsavedBytes": unsaved_bytes, "unsavedUploads": unsaved}


@usage_bp.get("/usage")
@rate_limited("files")
def usage() -> tuple[Response, int]:
    """The caller's usage (stored and reserved by unsaved uploads) and limits (null: unlimited)."""
    used, limits = components.uploads().usage(current_user_id())
    return jsonify(
        {
            "success": True,
            "usage": _quota_numbers(used.bytes, used.files, used.unsaved_bytes, used.unsaved_uploads),
            "limits": _quota_numbers(
                limits.bytes, limits.files, limits.unsaved_bytes, limits.unsaved_uploads
            ),
        }
    ), 200

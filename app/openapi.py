"""The API's contract: an OpenAPI 3.1 document at /openapi.json and a readable page at /docs.

The document is built from the same tables the code uses (the provider list,
the size limit, the routes); a test checks that every registered route is in
it, and schemathesis fuzzes the running service against it.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify

from .config import PROVIDERS, S3_FAMILY, Settings

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {
    "400": "The request is malformed: a field is missing, has the wrong type or is invalid.",
    "401": "The bearer token is missing or not acceptable (the message says which).",
    "403": "The object key was not issued to the caller.",
    "404": "Not found: the key was never issued, the object is not uploaded yet, or no such file.",
    "409": "The key was issued for another provider.",
    "410": "The upload was not saved in time and was cleaned up as abandoned (flask storage sweep).",
    "413": "The file, or the JSON body, is over its limit.",
    "415": "The content type is not allowed, or the uploaded object's type differs from the presigned one.",
    "422": "The uploaded object is not what was presigned (a size or type Azure could not refuse); deleted.",
    "429": "Rate limited; Retry-After says when to try again.",
    "502": "The storage provider failed or could not be reached.",
    "503": "The provider is not configured, or the database is unavailable (with Retry-After).",
    "504": "The storage provider did not answer in time.",
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(_ref("Error"), _ERROR[code]) for code in codes}


PRESIGN_ERRORS = ("400", "401", "413", "415", "429", "503")
SAVE_ERRORS = ("400", "401", "403", "404", "409", "410", "413", "415", "422", "429", "502", "503", "504")
READ_ERRORS = ("400", "401", "404", "429", "503")
_NOT_FOUND_FILE = "No such file among the caller's (another user's file id is 404 too)."


def _presign_operation(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["uploads"],
        "security": _SECURITY,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("PresignRequest")}},
        },
        "responses": {
            "200": _json(_ref("PresignResponse"), "A signed upload request for a new object key."),
            **_errors(*PRESIGN_ERRORS),
        },
    }


def _save_operation(summary: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "tags": ["uploads"],
        "security": _SECURITY,
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("SaveRequest")}}},
        "responses": {
            "201": _json(_ref("SaveResponse"), "The upload was checked and recorded."),
            "200": _json(_ref("SaveResponse"), "The upload had already been recorded for this user."),
            **_errors(*SAVE_ERRORS),
        },
    }


_SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"devUser": []}]
_FILE_ID = {
    "name": "file_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "description": "The file's id, as listed.",
}


def _file_operations(provider: str) -> dict[str, Any]:
    """Document the listing, reading, downloading and deleting routes of one provider."""
    not_found = {"404": _json(_ref("Error"), _NOT_FOUND_FILE)}
    return {
        f"/{provider}/files": {
            "get": {
                "summary": f"List the caller's {provider} files, newest first",
                "tags": ["files"],
                "security": _SECURITY,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "nextCursor from the previous page.",
                    },
                ],
                "responses": {
                    "200": _json(_ref("FileList"), "A page of files."),
                    **_errors("400", "401", "429", "503"),
                },
            }
        },
        f"/{provider}/files/{{file_id}}": {
            "get": {
                "summary": f"One of the caller's {provider} files, with a fresh downloadUrl",
                "tags": ["files"],
                "security": _SECURITY,
                "parameters": [_FILE_ID],
                "responses": {
                    "200": _json(_ref("SaveResponse"), "The file."),
                    **_errors(*READ_ERRORS),
                    **not_found,
                },
            },
            "delete": {
                "summary": f"Delete one of the caller's {provider} files: the object, then its row",
                "tags": ["files"],
                "security": _SECURITY,
                "parameters": [_FILE_ID],
                "responses": {
                    "204": {"description": "Deleted (also when it already was)."},
                    **_errors(*READ_ERRORS, "502", "504"),
                    **not_found,
                },
            },
        },
        f"/{provider}/files/{{file_id}}/download": {
            "get": {
                "summary": f"Redirect to a fresh download link for one of the caller's {provider} files",
                "tags": ["files"],
                "security": _SECURITY,
                "parameters": [_FILE_ID],
                "responses": {
                    "302": {
                        "description": "The file's downloadUrl, in Location.",
                        "headers": {"Location": {"schema": {"type": "string", "format": "uri"}}},
                    },
                    **_errors(*READ_ERRORS),
                    **not_found,
                },
            }
        },
    }


def _param(
    name: str, where: str, schema: dict[str, Any], description: str, required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


_KEY_QUERY = _param(
    "key", "query", {"type": "string", "minLength": 1}, "The key the upload was started with.", True
)
_UPLOAD_ID = _param("upload_id", "path", {"type": "string"}, "The multipart upload's id.", True)
_OBJECT = {"type": "object"}


def _multipart_operations(provider: str) -> dict[str, Any]:
    """Document the sign route and the Companion-style routes of one S3-compatible provider."""

    def op(summary: str, ok: dict[str, Any], errors: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        return {
            "summary": summary,
            "tags": ["multipart"],
            "security": _SECURITY,
            "responses": {"200": _json(ok, "Done."), **_errors(*errors)},
            **extra,
        }

    started = ("400", "401", "413", "415", "429", "502", "503", "504")
    step = ("400", "401", "403", "404", "429", "502", "503", "504")
    base = f"/{provider}/s3"
    body = {"required": True, "content": {"application/json": {"schema": _OBJECT}}}
    return {
        f"{base}/sign": {
            "post": op(
                "Sign one S3 request of an upload (Uppy 6 signRequest)",
                _ref("SignResponse"),
                ("400", "401", "403", "413", "415", "429", "503"),
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SignRequest")}},
                },
            )
        },
        f"{base}/params": {
            "get": op(
                "Sign a single upload: a POST form (S3) or a PUT (R2, B2)",
                _ref("UploadParams"),
                started,
                parameters=[
                    _param("filename", "query", {"type": "string"}, "The file's name.", True),
                    _param("type", "query", {"type": "string"}, "Its content type.", True),
                    _param("size", "query", {"type": "string", "pattern": "^[0-9]+$"}, "Its size in bytes."),
                ],
            )
        },
        f"{base}/multipart": {
            "post": op(
                "Start an upload in parts: {filename, type, metadata?, size?}",
                _ref("MultipartStarted"),
                started,
                requestBody=body,
            )
        },
        f"{base}/multipart/{{upload_id}}": {
            "get": op(
                "List the parts uploaded so far",
                {"type": "array", "items": _ref("Part")},
                step,
                parameters=[_UPLOAD_ID, _KEY_QUERY],
            ),
            "delete": op(
                "Abort the upload and drop its parts",
                _OBJECT,
                step,
                parameters=[_UPLOAD_ID, _KEY_QUERY],
            ),
        },
        f"{base}/multipart/{{upload_id}}/batch": {
            "get": op(
                "Sign the PUT of several parts",
                {
                    "type": "object",
                    "required": ["presignedUrls"],
                    "properties": {
                        "presignedUrls": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                step,
                parameters=[
                    _UPLOAD_ID,
                    _KEY_QUERY,
                    _param("partNumbers", "query", {"type": "string"}, "Such as 1,2,3 (at most 100).", True),
                ],
            )
        },
        f"{base}/multipart/{{upload_id}}/{{part_number}}": {
            "get": op(
                "Sign the PUT of one part",
                {
                    "type": "object",
                    "required": ["url", "expires"],
                    "properties": {"url": {"type": "string"}, "expires": {"type": "integer"}},
                },
                step,
                parameters=[
                    _UPLOAD_ID,
                    _param("part_number", "path", {"type": "string"}, "1 to 10000.", True),
                    _KEY_QUERY,
                ],
            )
        },
        f"{base}/multipart/{{upload_id}}/complete": {
            "post": op(
                "Assemble the object from its parts: {parts: [{PartNumber, ETag}]}",
                {
                    "type": "object",
                    "required": ["location", "key"],
                    "properties": {"location": {"type": "string"}, "key": {"type": "string"}},
                },
                (*step, "413"),
                parameters=[_UPLOAD_ID, _KEY_QUERY],
                requestBody=body,
            )
        },
    }


def _schemas(max_upload_bytes: int) -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["success", "error"],
            "properties": {"success": {"const": False}, "error": {"type": "string"}},
        },
        "PresignRequest": {
            "type": "object",
            "required": ["fileName", "contentType"],
            "properties": {
                "fileName": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "description": "Path parts and control characters are removed; 200 bytes are kept.",
                },
                "contentType": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "examples": ["image/png"],
                },
                "fileSize": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": max_upload_bytes,
                    "description": "Declared size in bytes; S3, R2 and B2 sign it as Content-Length.",
                },
            },
        },
        "PresignResponse": {
            "type": "object",
            "required": [
                "success",
                "provider",
                "presignedUrl",
                "method",
                "headers",
                "objectKey",
                "publicFileUrl",
                "expiresAt",
            ],
            "properties": {
                "success": {"const": True},
                "provider": {"enum": list(PROVIDERS)},
                "presignedUrl": {"type": "string", "format": "uri"},
                "method": {"const": "PUT"},
                "headers": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Every header the PUT must carry.",
                },
                "objectKey": {"type": "string"},
                "publicFileUrl": {"type": "string", "format": "uri"},
                "expiresAt": {"type": "string", "format": "date-time"},
                "sasUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "Azure only: the Azure guide's name.",
                },
                "blobName": {"type": "string", "description": "Azure only: the Azure guide's name."},
                "fileUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "Azure only: the Azure guide's name.",
                },
            },
        },
        "SaveRequest": {
            "type": "object",
            "properties": {
                "objectKey": {"type": "string", "minLength": 1, "maxLength": 1024},
                "blobName": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 1024,
                    "description": "Azure routes.",
                },
                "publicFileUrl": {"description": "Accepted and ignored: the service computes URLs itself."},
                "fileUrl": {"description": "Accepted and ignored."},
            },
            "description": "objectKey (Azure routes: objectKey or blobName) is required.",
            "anyOf": [{"required": ["objectKey"]}, {"required": ["blobName"]}],
        },
        "File": {
            "type": "object",
            "required": ["id", "provider", "objectKey", "fileUrl", "downloadUrl"],
            "properties": {
                "id": {"type": "integer"},
                "provider": {"enum": list(PROVIDERS)},
                "objectKey": {"type": "string"},
                "blobName": {"type": "string"},
                "fileName": nullable_string,
                "contentType": nullable_string,
                "size": {"type": ["integer", "null"]},
                "etag": nullable_string,
                "fileUrl": nullable_string,
                "uploadedAt": {"type": ["string", "null"], "format": "date-time"},
                "downloadUrl": {
                    "type": "string",
                    "format": "uri",
                    "description": "Reads the file: public, or signed for DOWNLOAD_URL_EXPIRES_SECONDS.",
                },
            },
        },
        "SignRequest": {
            "type": "object",
            "required": ["method", "key"],
            "properties": {
                "method": {"enum": ["PUT", "POST", "GET", "DELETE"]},
                "key": {
                    "type": "string",
                    "description": (
                        "The upload's key; on the first request, a file name or Uppy's "
                        "<uuid>-<file name> (the service picks the real key and answers it)."
                    ),
                },
                "uploadId": {"type": "string"},
                "partNumber": {"type": "integer", "minimum": 1, "maximum": 10000},
                "expiresIn": {"type": "integer", "minimum": 1, "maximum": 604800},
                "contentType": {
                    "type": "string",
                    "description": (
                        "First request (PUT object, POST create) only. When absent (Uppy sends "
                        "none), no type is signed and save-metadata checks the stored one."
                    ),
                },
                "fileName": {"type": "string"},
                "fileSize": {"type": "integer", "minimum": 0},
                "bucket": {"type": "string"},
            },
        },
        "SignResponse": {
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string"},
                "key": {"type": "string", "description": "The key the service picked (first request)."},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "partSize": {"type": "integer", "description": "Bytes per part that fits 10,000 parts."},
            },
        },
        "UploadParams": {
            "type": "object",
            "required": ["method", "url", "fields", "headers", "key"],
            "properties": {
                "method": {"enum": ["POST", "PUT"]},
                "url": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"}},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "key": {"type": "string"},
            },
        },
        "MultipartStarted": {
            "type": "object",
            "required": ["key", "uploadId", "partSize"],
            "properties": {
                "key": {"type": "string"},
                "uploadId": {"type": "string"},
                "partSize": {"type": "integer"},
            },
        },
        "Part": {
            "type": "object",
            "required": ["PartNumber", "ETag", "Size"],
            "properties": {
                "PartNumber": {"type": "integer"},
                "ETag": {"type": "string"},
                "Size": {"type": "integer"},
            },
        },
        "FileList": {
            "type": "object",
            "required": ["success", "files", "nextCursor"],
            "properties": {
                "success": {"const": True},
                "files": {"type": "array", "items": _ref("File")},
                "nextCursor": {"type": ["string", "null"], "description": "null on the last page."},
            },
        },
        "SaveResponse": {
            "type": "object",
            "required": ["success", "file"],
            "properties": {"success": {"const": True}, "file": _ref("File")},
        },
        "Providers": {
            "type": "object",
            "required": ["success", "defaultProvider", "providers"],
            "properties": {
                "success": {"const": True},
                "defaultProvider": {"enum": list(PROVIDERS)},
                "providers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "bucket"],
                        "properties": {"name": {"enum": list(PROVIDERS)}, "bucket": {"type": "string"}},
                    },
                },
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {
            "type": "object",
            "required": ["status", "database", "providers"],
            "properties": {
                "status": {"enum": ["ready", "unavailable"]},
                "database": {"type": "string"},
                "providers": {"type": "object"},
            },
        },
    }


def build_document(settings: Settings) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for this configuration."""
    paths: dict[str, Any] = {}
    for provider in PROVIDERS:
        paths[f"/{provider}/presign-upload"] = {
            "post": _presign_operation(f"Presign an upload to {provider}")
        }
        paths[f"/{provider}/save-metadata"] = {
            "post": _save_operation(f"Record an object uploaded to {provider}")
        }
        paths.update(_file_operations(provider))
        if provider in S3_FAMILY:
            paths.update(_multipart_operations(provider))
    paths["/presign-upload"] = {"post": _presign_operation("The S3 and R2 guides' route (DEFAULT_PROVIDER)")}
    paths["/save-metadata"] = {"post": _save_operation("The guides' save route (the key's own provider)")}
    paths["/presign-b2-upload"] = {"post": _presign_operation("The B2 guide's presign route")}
    paths["/save-b2-metadata"] = {"post": _save_operation("The B2 guide's save route")}
    paths["/generate-upload-sas"] = {"post": _presign_operation("The Azure guide's SAS route")}
    paths["/signed-request"] = {
        "get": {
            "summary": "Backblaze's direct-upload article: a 60-second PUT to B2, no type bound",
            "tags": ["uploads"],
            "security": _SECURITY,
            "parameters": [
                _param("name", "query", {"type": "string", "minLength": 1}, "The file's name.", True)
            ],
            "responses": {
                "200": _json(
                    {
                        "allOf": [
                            _ref("PresignResponse"),
                            {
                                "type": "object",
                                "required": ["url"],
                                "properties": {"url": {"type": "string", "description": "presignedUrl"}},
                            },
                        ]
                    },
                    "A signed PUT (the article's url) and the key to save with /save-b2-metadata.",
                ),
                **_errors("400", "401", "413", "429", "503"),
            },
        }
    }
    paths["/providers"] = {
        "get": {
            "summary": "List the enabled providers",
            "tags": ["service"],
            "responses": {"200": _json(_ref("Providers"), "Enabled providers and their buckets.")},
        }
    }
    paths["/healthz"] = {
        "get": {
            "summary": "Liveness (no I/O)",
            "tags": ["service"],
            "responses": {"200": _json(_ref("Health"), "The process answers.")},
        }
    }
    paths["/readyz"] = {
        "get": {
            "summary": "Readiness: the database answers; provider configuration",
            "tags": ["service"],
            "responses": {
                "200": _json(_ref("Readiness"), "Ready to serve."),
                "503": _json(_ref("Readiness"), "The database is unavailable."),
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "tags": ["service"],
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
        }
    }
    paths["/"] = {
        "get": {
            "summary": "The upload page (Uppy)",
            "tags": ["page"],
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        }
    }
    for path, what in (
        ("/assets/{name}", "The page's own script and styles"),
        ("/assets/uppy/{name}", "Uppy's bundle"),
    ):
        paths[path] = {
            "get": {
                "summary": what,
                "tags": ["page"],
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": {"description": "The file.", "content": {"*/*": {"schema": {"type": "string"}}}},
                    **_errors("404", "503"),
                },
            }
        }
    paths["/docs"] = {
        "get": {
            "summary": "This document as a page",
            "tags": ["service"],
            "responses": {
                "200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Upload service",
            "version": "1.0.0",
            "description": (
                "Presigned browser uploads to AWS S3, Cloudflare R2, Backblaze B2 and Azure Blob Storage, "
                "with each file's metadata in PostgreSQL. Every error is {success: false, error}."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(settings.max_upload_bytes),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "devUser": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-User-Id",
                    "description": "AUTH_MODE=dev only: act as this user (default user_123).",
                },
            },
        },
    }


_DOCS_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}"
    "td{padding:.3rem .8rem;vertical-align:top}tr:nth-child(even){background:#f4f4f4}"
)


@lru_cache(maxsize=8)
def _rendered_docs(title: str, rows: tuple[tuple[str, str, str], ...]) -> str:
    items = "\n".join(
        f"<tr><td><code>{html.escape(method.upper())}</code></td><td><code>{html.escape(path)}</code></td>"
        f"<td>{html.escape(summary)}</td></tr>"
        for path, method, summary in rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_DOCS_CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>The machine-readable contract is <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).
Send <code>Authorization: Bearer &lt;JWT&gt;</code>.
Errors are <code>{{"success": false, "error": "..."}}</code>.</p>
<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th></tr></thead><tbody>
{items}
</tbody></table></body></html>"""


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
def docs() -> Response:
    """Serve a readable list of the routes."""
    document = current_app.extensions["openapi"]
    rows = tuple(
        (path, method, operation.get("summary", ""))
        for path, item in document["paths"].items()
        for method, operation in item.items()
    )
    return Response(_rendered_docs(document["info"]["title"], rows), mimetype="text/html")


def init_app(app: Flask, settings: Settings) -> None:
    """Build the document once per process."""
    app.extensions["openapi"] = build_document(settings)

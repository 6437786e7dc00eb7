"""The upload page at ``/``: Uppy's Dashboard on top of this service's own routes.

Uppy comes from the npm registry (``package.json``: ``npm ci`` puts its
prebuilt bundle in ``node_modules/uppy/dist``); this module serves that
bundle and the page's own script, and nothing is copied into the repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, render_template, send_from_directory

from ..config import PROVIDERS, Settings
from ..errors import NotFound, ServiceUnavailable
from ..storage import StorageProvider

bp = Blueprint("page", __name__, template_folder="templates", static_folder=None)

STATIC = Path(__file__).resolve().parent / "static"
UPPY_DIST = Path(__file__).resolve().parents[2] / "node_modules" / "uppy" / "dist"
# The only files of the bundle the page uses (and their source maps).
UPPY_FILES = frozenset({"uppy.min.mjs", "uppy.min.css", "uppy.min.mjs.map", "uppy.min.css.map"})
OWN_FILES = frozenset({"upload.js", "upload.css"})
# Browsers refuse a module script served with any other type, and Python's
# mimetypes does not know .mjs everywhere.
MEDIA_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
}


def _page_config(settings: Settings, providers: Mapping[str, StorageProvider]) -> dict[str, Any]:
    enabled = [name for name in PROVIDERS if name in providers]
    default = settings.default_provider if settings.default_provider in enabled else next(iter(enabled), None)
    return {
        "providers": enabled,
        "defaultProvider": default,
        "authMode": settings.auth.mode,
        "tokenUrl": settings.page_token_url,
        "multipartThreshold": settings.page_multipart_threshold_bytes,
        "maxUploadBytes": settings.max_upload_bytes,
    }


def _content_security_policy(providers: Mapping[str, StorageProvider]) -> str:
    # The page talks to this service and PUTs straight to the storage endpoints; nothing else.
    origins = sorted(
        {f"{p.scheme}://{p.netloc}" for p in (urlsplit(s.object_url("x")) for s in providers.values())}
    )
    return (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        f"img-src 'self' data: blob:; connect-src 'self' {' '.join(origins)}; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


@bp.get("/")
def upload_page() -> Response:
    """The upload page."""
    response = Response(render_template("upload.html", config=current_app.extensions["page_config"]))
    response.headers["Content-Security-Policy"] = current_app.extensions["page_csp"]
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/assets/<name>")
def asset(name: str) -> Response:
    """The page's own script and styles."""
    if name not in OWN_FILES:
        raise NotFound(f"no asset {name!r}")
    return _static(send_from_directory(STATIC, name, max_age=300, mimetype=_media_type(name)))


@bp.get("/assets/uppy/<name>")
def uppy_asset(name: str) -> Response:
    """Uppy's prebuilt bundle, as npm installed it."""
    if name not in UPPY_FILES:
        raise NotFound(f"no Uppy file {name!r}")
    if not (UPPY_DIST / name).is_file():
        raise ServiceUnavailable("Uppy is not installed: run `npm ci` (make install does)")
    return _static(send_from_directory(UPPY_DIST, name, max_age=3600, mimetype=_media_type(name)))


def _media_type(name: str) -> str:
    return MEDIA_TYPES[Path(name).suffix]


def _static(response: Response) -> Response:
    # Public code, not per-user data: caching is fine (the app's default is no-store).
    response.headers["Cache-Control"] = f"public, max-age={response.cache_control.max_age or 300}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def init_app(app: Flask, settings: Settings, providers: Mapping[str, StorageProvider]) -> None:
    """Work out the page's configuration and CSP once."""
    app.extensions["page_config"] = _page_config(settings, providers)
    app.extensions["page_csp"] = _content_security_policy(providers)

"""The upload service: presigned uploads to S3, R2, B2 and Azure, metadata in PostgreSQL."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from dotenv import load_dotenv
from flask import Flask, Response
from flask_cors import CORS

from . import auth, db, error_handlers, migrations, observability, openapi, page, ratelimit, storage
from .config import PROVIDERS, S3_FAMILY, Settings, load_settings
from .events import commands as event_commands
from .maintenance import commands as maintenance_commands
from .maintenance import quotas as quota_commands
from .maintenance.background import BackgroundSweeper
from .repository import FileRepository
from .status import bp as status_bp
from .uploads.files import FileService
from .uploads.multipart import MultipartService
from .uploads.multipart_views import multipart_bp
from .uploads.policy import UploadPolicy
from .uploads.recorder import PendingRecorder
from .uploads.service import UploadService
from .uploads.views import bp as uploads_bp
from .uploads.views import guides_bp, usage_bp

log = logging.getLogger(__name__)

MAX_JSON_BODY_BYTES = 64 * 1024


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app from the environment (and ``.env``), or from ``test_config`` alone."""
    app = Flask(__name__, static_folder=None)
    if test_config is None:
        load_dotenv()
        env: Mapping[str, Any] = os.environ
    else:
        env = test_config
    settings = load_settings(env)
    app.extensions["settings"] = settings
    # Request bodies are small JSON documents; refuse anything bigger unread.
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON_BODY_BYTES
    # Flask's own JSON: keep non-ASCII file names readable in responses.
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    register_extensions(app, settings)
    register_blueprints(app)
    register_http_policies(app, settings)
    error_handlers.init_app(app)
    migrations.init_app(app)
    maintenance_commands.init_app(app)
    event_commands.init_app(app)
    quota_commands.init_app(app)
    _log_providers(settings)
    return app


def register_extensions(app: Flask, settings: Settings) -> None:
    """Build the per-process parts once: pool, storage clients, repository, services."""
    database = db.Database.from_settings(settings)
    providers = storage.build_providers(settings)
    app.extensions["database"] = database
    app.extensions["storage"] = providers
    auth.init_app(app, settings.auth)
    openapi.init_app(app, settings)
    page.init_app(app, settings, providers)
    repo = FileRepository(
        database.run,
        row_level_security=settings.db_row_level_security,
        events=settings.events_enabled,
        quotas=settings.quotas if settings.quotas_enforced else None,
    )
    policy = UploadPolicy(
        settings.max_upload_bytes, settings.allowed_content_types, settings.require_checksums
    )
    # Presign records are written behind the answers, by a thread of the recorder's.
    uploads = UploadService(repo, policy, PendingRecorder(repo.record_pending_batch), providers)
    app.extensions["uploads"] = uploads
    app.extensions["multipart"] = MultipartService(uploads, policy, settings.upload_url_expires_seconds)
    app.extensions["files"] = FileService(repo, providers, settings.download_url_expires_seconds)
    sweeper = BackgroundSweeper(
        lambda: database.connect_apart("sweeper"),
        providers,
        settings.sweep_interval_seconds,
        settings.sweep_grace_seconds,
        settings.upload_url_expires_seconds,
        events=settings.events_enabled,
    )
    app.extensions["sweeper"] = sweeper
    if sweeper.enabled:
        # Started by the first request of each process: after a fork, never in a CLI command.
        app.before_request(sweeper.ensure_started)


def register_blueprints(app: Flask) -> None:
    """Mount the upload routes once per provider, plus the guides' own paths."""
    for name in PROVIDERS:
        app.register_blueprint(
            uploads_bp, name=f"uploads_{name}", url_prefix=f"/{name}", url_defaults={"provider": name}
        )
    for name in S3_FAMILY:
        # Uppy's Companion protocol puts its routes under <endpoint>/s3/...
        app.register_blueprint(
            multipart_bp, name=f"multipart_{name}", url_prefix=f"/{name}/s3", url_defaults={"provider": name}
        )
    app.register_blueprint(guides_bp)
    app.register_blueprint(usage_bp)
    app.register_blueprint(status_bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(page.bp)


def register_http_policies(app: Flask, settings: Settings) -> None:
    """Request ids and access logs, rate limits, CORS, and no caching of signed URLs."""
    # First, so that even a request refused by the rate limiter has an id and a log line.
    observability.init_app(app, settings.trusted_proxy_count)
    ratelimit.init_app(app, settings)
    if settings.cors_allowed_origins:
        headers = ["Authorization", "Content-Type"]
        if settings.auth.mode == "dev":
            headers.append("X-User-Id")
        CORS(
            app,
            origins=list(settings.cors_allowed_origins),
            allow_headers=headers,
            methods=["GET", "POST", "DELETE", "OPTIONS"],
            supports_credentials=settings.cors_allow_credentials,
            max_age=600,
        )

    @app.after_request
    def _no_store(response: Response) -> Response:
        # Answers carry signed URLs and per-user data: no shared cache may keep them.
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def _log_providers(settings: Settings) -> None:
    for name in PROVIDERS:
        if name in settings.providers:
            log.info("provider %s enabled", name)
        else:
            log.info("provider %s disabled: missing %s", name, ", ".join(settings.missing.get(name, ())))

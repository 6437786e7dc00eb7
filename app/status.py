"""What the service offers: the enabled providers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .config import PROVIDERS
from .storage import StorageProvider

bp = Blueprint("status", __name__)


@bp.get("/providers")
def list_providers() -> Response:
    """List enabled providers (name and bucket, never a secret) and the default."""
    providers: dict[str, StorageProvider] = current_app.extensions["storage"]
    settings = current_app.extensions["settings"]
    return jsonify(
        {
            "success": True,
            "defaultProvider": settings.default_provider,
            "providers": [
                {"name": name, "bucket": providers[name].bucket} for name in PROVIDERS if name in providers
            ],
        }
    )

"""What the service offers and whether it can serve: providers, liveness, readiness."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from . import components
from .config import PROVIDERS
from .errors import ServiceUnavailable

bp = Blueprint("status", __name__)


@bp.get("/providers")
def list_providers() -> Response:
    """List enabled providers (name and bucket, never a secret) and the default."""
    providers = components.providers()
    settings = components.settings()
    return jsonify(
        {
            "success": True,
            "defaultProvider": settings.default_provider,
            "providers": [
                {"name": name, "bucket": providers[name].bucket} for name in PROVIDERS if name in providers
            ],
        }
    )


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers. No I/O, so a slow database never restarts it."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the database answers a short query; each provider's configuration is reported."""
    providers = components.providers()
    report: dict[str, Any] = {}
    for name in PROVIDERS:
        if name in providers:
            report[name] = {"configured": True, "bucket": providers[name].bucket}
        else:
            report[name] = {"configured": False, "missing": list(providers.missing(name))}
    try:
        components.get_database().ping()
        database, status = "ok", 200
    except ServiceUnavailable as exc:
        database, status = exc.message, 503
    body = {"status": "ready" if status == 200 else "unavailable", "database": database, "providers": report}
    response = jsonify(body)
    if status == 503:
        response.headers["Retry-After"] = "2"
    return response, status

"""The API's contract: ``openapi.yaml`` beside this file, served at /openapi.json and listed at /docs.

The document is data, read once per process; this module only fills in what
depends on the code or the configuration (the per-provider paths, the size
limit). A test checks that every registered route is in it and that its
limits equal the parsers' constants; schemathesis fuzzes the running service
against it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template

from ..config import PROVIDERS, S3_FAMILY, Settings

bp = Blueprint("openapi", __name__, template_folder="templates")

CONTRACT = Path(__file__).with_name("openapi.yaml")
PER_PROVIDER = {"x-provider-paths": PROVIDERS, "x-s3-family-paths": S3_FAMILY}


def load_contract() -> dict[str, Any]:
    """Return ``openapi.yaml`` as it is written (templates and all)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with CONTRACT.open(encoding="utf-8") as f:
        document: dict[str, Any] = yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader
    return document


def _for_provider(path: str, item: dict[str, Any], provider: str) -> tuple[str, dict[str, Any]]:
    item = copy.deepcopy(item)
    for operation in item.values():
        if isinstance(operation, dict) and "summary" in operation:
            operation["summary"] = operation["summary"].replace("{provider}", provider)
    return path.replace("{provider}", provider), item


def build_document(settings: Settings) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document for this configuration."""
    document = load_contract()
    paths: dict[str, Any] = {}
    templates = {key: document.pop(key) for key in PER_PROVIDER}
    for provider in PROVIDERS:
        for key, family in PER_PROVIDER.items():
            if provider in family:
                paths.update(_for_provider(path, item, provider) for path, item in templates[key].items())
    paths.update(document["paths"])
    document["paths"] = paths
    file_size = document["components"]["schemas"]["PresignRequest"]["properties"]["fileSize"]
    file_size["maximum"] = settings.max_upload_bytes
    return document


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """Serve the OpenAPI document."""
    return jsonify(current_app.extensions["openapi"])


@bp.get("/docs")
def docs() -> Response:
    """Serve a readable list of the routes."""
    document = current_app.extensions["openapi"]
    rows = [
        (path, method, operation.get("summary", ""))
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    page = render_template("docs.html", title=document["info"]["title"], rows=rows)
    return Response(page, mimetype="text/html")


def init_app(app: Flask, settings: Settings) -> None:
    """Build the document once per process."""
    app.extensions["openapi"] = build_document(settings)

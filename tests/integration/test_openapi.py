"""The OpenAPI document is valid, names every route, and the running service keeps to it (schemathesis)."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from openapi_spec_validator import validate
from werkzeug.serving import make_server

from devstack.services import ROOT

pytestmark = pytest.mark.integration


def registered_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                # Flask's /files/<file_id> is OpenAPI's /files/{file_id}.
                operations.add((re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()))
    return operations


def documented_operations(document: dict[str, object]) -> set[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    return {(path, method) for path, item in paths.items() for method in item}


def test_openapi_document_is_valid_3_1(client: object) -> None:
    response = client.get("/openapi.json")  # type: ignore[attr-defined]
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_documented_and_nothing_else(app: Flask) -> None:
    document = app.test_client().get("/openapi.json").get_json()
    assert registered_operations(app) == documented_operations(document)


def test_docs_page_lists_every_route(app: Flask) -> None:
    response = app.test_client().get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for path, _ in registered_operations(app):
        assert f"<code>{path}</code>" in page


def test_running_service_keeps_to_its_document(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "schemathesis"), "run",
                f"http://127.0.0.1:{server.server_port}/openapi.json",
                "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                "response_schema_conformance",
                "--max-examples", "25", "--seed", "1", "--workers", "1",
                "--report", "junit", "--report-dir", str(tmp_path),
            ],
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]

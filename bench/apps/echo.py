"""The ceiling: a bare Flask route that parses a JSON body and echoes it."""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    """Build the echo app."""
    app = Flask(__name__)

    @app.post("/echo")
    def echo():  # type: ignore[no-untyped-def]
        return jsonify(request.get_json())

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    return app

"""One JSON shape for every error response: ``{"success": false, "error": ...}``."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .errors import ApiError

log = logging.getLogger(__name__)


def error_response(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """Build the ``{"success": false, "error": ...}`` response every error uses."""
    response = jsonify({"success": False, "error": message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_api_error(error: ApiError) -> Response:
    return error_response(error.message, error.status, error.headers)


def _handle_http_exception(error: HTTPException) -> Response | Any:
    if error.response is not None:
        # Already shaped by whoever raised it.
        return error.response
    message = error.description or error.name
    if isinstance(error, RequestEntityTooLarge):
        # The request's own limit: a route may allow more than the app's default.
        limit = request.max_content_length
        message = f"request body is over the {limit} byte limit"
    response = error_response(message, error.code or 500)
    # Keep headers werkzeug computed, such as Allow on a 405.
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _handle_unexpected(error: Exception) -> Response:
    # The traceback goes to the log only; the client learns nothing internal.
    log.exception("unhandled error")
    return error_response("internal server error", 500)


def init_app(app: Flask) -> None:
    """Send every error, expected or not, as the same JSON shape."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)

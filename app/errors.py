"""One error type for the API and one JSON shape for every error response."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ApiError(Exception):
    """A refusal the client can act on: an HTTP status and a message."""

    status = 400

    def __init__(self, message: str, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Gone(ApiError):
    status = 410


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class UnprocessableEntity(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class ServiceUnavailable(ApiError):
    status = 503


class BadGateway(ApiError):
    status = 502


class GatewayTimeout(ApiError):
    status = 504


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

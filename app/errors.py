"""One error type for the API: each refusal is an ``ApiError`` with its status and message.

Plain exceptions, so services raise them without knowing of the web layer;
``app/error_handlers.py`` turns them into the one JSON shape.
"""

from __future__ import annotations


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

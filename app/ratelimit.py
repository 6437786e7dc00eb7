"""Per-user rate limits on the routes that sign URLs and write rows (Flask-Limiter).

Views declare their scope with ``rate_limited("presign")``; ``init_app``
wraps them with a limit shared by every route of that scope, so spreading
requests over four providers and the guides' paths gains nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response
from flask_limiter import Limiter, RequestLimit
from flask_limiter.util import get_remote_address

from .auth import current_user_id
from .config import Settings
from .errors import ApiError, error_response

F = TypeVar("F", bound=Callable[..., Any])


def rate_limited(scope: str) -> Callable[[F], F]:
    """Mark a view as counted against the per-user limit of ``scope``."""

    def mark(view: F) -> F:
        view.rate_limit_scope = scope  # type: ignore[attr-defined]
        return view

    return mark


def _rate_limit_key() -> str:
    try:
        return f"user:{current_user_id()}"
    except ApiError:
        # Not authenticated: count by address, so token guessing is limited too.
        return f"addr:{get_remote_address()}"


def _refuse(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    return error_response(
        f"rate limit exceeded ({limit.limit}), try again in {retry_after} s",
        429,
        {"Retry-After": str(retry_after)},
    )


def init_app(app: Flask, settings: Settings) -> None:
    """Build this app's limiter and wrap the marked views."""
    limiter = Limiter(
        key_func=_rate_limit_key,
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        key_prefix="upload-service",
        # Its headers would also overwrite the Retry-After of our own 503s.
        headers_enabled=False,
        # A Redis outage must not take uploads down: count in memory meanwhile.
        in_memory_fallback_enabled=True,
        swallow_errors=True,
    )
    limits = {
        scope: limiter.shared_limit(value, scope=scope, methods=["POST"], on_breach=_refuse)
        for scope, value in (("presign", settings.rate_limit_presign), ("save", settings.rate_limit_save))
    }
    # Every limit here is a decorated one, checked by the view wrapper; the
    # limiter's before_request pass would only repeat that work on every
    # request (it was a third of a presign's time), so it is taken out.
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}
    for endpoint, view in list(app.view_functions.items()):
        scope = getattr(view, "rate_limit_scope", None)
        if scope is not None:
            if view not in wrapped:
                wrapped[view] = limits[scope](view)
            app.view_functions[endpoint] = wrapped[view]

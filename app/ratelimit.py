"""Per-user rate limits on the routes that sign URLs and write rows.

Views declare their scope with ``rate_limited("presign")``; every route of a
scope shares one budget per user, so spreading requests over four providers
and the guides' paths gains nothing. Callers without a valid token are
counted by address.

Built on ``limits``, the library Flask-Limiter wraps (same storage URIs, same
fixed windows). Flask-Limiter itself was measured at about 330 µs of CPU per
request here, a third of a presign; this module does the same check in a few.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .auth import current_user_id
from .config import Settings
from .errors import ApiError, TooManyRequests

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
KEY_PREFIX = "upload-service"
# After the shared storage (Redis) fails, count in memory for this long before trying it again.
FALLBACK_SECONDS = 10.0


class RateLimiter:
    """Fixed-window counters per scope and caller, in memory or in Redis."""

    def __init__(self, storage_uri: str, limits: dict[str, str]):
        options: dict[str, Any] = {}
        if storage_uri.startswith(("redis", "rediss")):
            # A Redis that stopped answering must cost a request milliseconds, not minutes.
            options = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}
        self._shared = FixedWindowRateLimiter(storage_from_string(storage_uri, **options))
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._items: dict[str, RateLimitItem] = {scope: parse(value) for scope, value in limits.items()}
        self._shared_down_until = 0.0
        self._lock = threading.Lock()

    def _strategy(self) -> FixedWindowRateLimiter:
        return self._local if time.monotonic() < self._shared_down_until else self._shared

    def check(self, scope: str, caller: str) -> None:
        """Count one request of ``caller`` in ``scope``; refuse with 429 when over the limit."""
        item = self._items[scope]
        strategy = self._strategy()
        try:
            allowed = strategy.hit(item, KEY_PREFIX, scope, caller)
        except Exception:  # noqa: BLE001 - any storage failure: count locally rather than refuse uploads
            with self._lock:
                self._shared_down_until = time.monotonic() + FALLBACK_SECONDS
            log.warning("rate-limit storage unreachable; counting in memory for %.0f s", FALLBACK_SECONDS)
            strategy = self._local
            allowed = strategy.hit(item, KEY_PREFIX, scope, caller)
        if not allowed:
            reset = strategy.get_window_stats(item, KEY_PREFIX, scope, caller).reset_time
            retry_after = max(1, math.ceil(reset - time.time()))
            raise TooManyRequests(
                f"rate limit exceeded ({item}), try again in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )


def _caller() -> str:
    try:
        return f"user:{current_user_id()}"
    except ApiError:
        # Not authenticated: count by address, so token guessing is limited too.
        return f"addr:{request.remote_addr}"


def rate_limited(scope: str) -> Callable[[F], F]:
    """Count a view's requests against the per-caller limit of ``scope``."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args: Any, **kwargs: Any) -> Any:
            limiter: RateLimiter = current_app.extensions["rate_limiter"]
            limiter.check(scope, _caller())
            return view(*args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate


def init_app(app: Flask, settings: Settings) -> None:
    """Build this app's limiter."""
    app.extensions["rate_limiter"] = RateLimiter(
        settings.rate_limit_storage_uri,
        {"presign": settings.rate_limit_presign, "save": settings.rate_limit_save},
    )

"""Count and time every storage call at the providers' one choke point (``_translate_errors``, ``_send``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ..metrics import STORAGE_CALL_SECONDS, STORAGE_CALLS
from .base import StorageRefused, StorageTimeout


class _Call:
    """The call being counted: a caller that reads a refusal from a status says so."""

    def __init__(self) -> None:
        self.outcome = "ok"

    def refused(self) -> None:
        """Count this call as refused (a 4xx answer the caller turns into an error itself)."""
        self.outcome = "refused"


@contextmanager
def storage_call(provider: str, operation: str) -> Iterator[_Call]:
    """Count and time one call, retries included; its outcome is the service error it raised, if any."""
    started = time.perf_counter()
    outcome = "error"
    try:
        call = _Call()
        yield call
        outcome = call.outcome
    except StorageTimeout:
        outcome = "timeout"
        raise
    except StorageRefused:
        # 4xx: the call worked and the storage said no (absent upload, object already there).
        outcome = "refused"
        raise
    finally:
        STORAGE_CALLS.labels(provider, operation, outcome).inc()
        STORAGE_CALL_SECONDS.labels(provider, operation).observe(time.perf_counter() - started)

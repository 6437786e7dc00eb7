"""In-process rate-limit windows: limits' fixed-window rule, without its timer threads."""

from __future__ import annotations

import threading
import time

import pytest
from limits import parse

from app.errors import TooManyRequests
from app.ratelimit import LocalWindows, RateLimiter


def test_a_window_allows_its_amount_then_refuses_until_it_ends() -> None:
    windows = LocalWindows()
    item = parse("2/second")
    assert [windows.hit(item, "presign", "alice") for _ in range(3)] == [True, True, False]
    assert windows.hit(item, "presign", "bob")  # another caller, another window
    assert 0 < windows.reset_time(item, "presign", "alice") - time.time() <= 1
    time.sleep(1.05)
    assert windows.hit(item, "presign", "alice")


def test_expired_windows_are_swept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LocalWindows, "SWEEP_EVERY_SECONDS", 0.0)
    windows = LocalWindows()
    item = parse("5/second")
    for n in range(100):
        windows.hit(item, "presign", f"user{n}")
    time.sleep(1.05)
    windows.hit(item, "presign", "last")
    assert len(windows._windows) == 1


def test_concurrent_hits_are_all_counted() -> None:
    limiter = RateLimiter("memory://", {"presign": "4000/minute"})
    refused: list[TooManyRequests] = []

    def hammer() -> None:
        for _ in range(1000):
            try:
                limiter.check("presign", "user:alice")
            except TooManyRequests as exc:
                refused.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 1000  # exactly the hits over 4,000
    assert refused[0].message.startswith("rate limit exceeded (4000 per 1 minute), try again in ")

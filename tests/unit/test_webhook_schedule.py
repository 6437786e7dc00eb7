"""The webhook worker's retry schedule and how it names receivers."""

from __future__ import annotations

from app.events.delivery import MAX_RETRY_SECONDS, receiver_id, retry_delay


def test_retries_wait_four_times_longer_each_time_up_to_six_hours_with_some_spread() -> None:
    for attempt, expected in [(1, 5), (2, 20), (3, 80), (4, 320), (5, 1280), (6, 5120), (7, 20480)]:
        delays = [retry_delay(attempt, 5.0) for _ in range(200)]
        assert min(delays) >= expected
        assert max(delays) <= expected * 1.25
        assert max(delays) > min(delays)  # spread, so that retries of many events do not land at once
    assert all(MAX_RETRY_SECONDS <= retry_delay(n, 5.0) <= MAX_RETRY_SECONDS * 1.25 for n in range(8, 30))


def test_a_receiver_is_named_by_a_digest_that_keeps_its_token_out() -> None:
    url = "https://hooks.example.com/in?token=s3cret"
    assert receiver_id(url) == receiver_id(url)
    assert receiver_id(url) != receiver_id("https://hooks.example.com/in?token=other")
    assert "s3cret" not in receiver_id(url) and len(receiver_id(url)) == 16

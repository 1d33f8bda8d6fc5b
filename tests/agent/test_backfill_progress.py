"""The backfill's pace and progress: the token bucket bounds what a window may take; the
progress gives rate, ETA, a bar's fraction and one log line a minute while draining."""

from __future__ import annotations

import logging

import pytest

from plantsync.agent.backfill import BackfillProgress, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_bounds_any_window_to_a_burst_plus_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(50, clock=clock)
    taken = 0
    for _ in range(100):  # ten seconds in steps of 0.1 s, taking all it offers
        available = bucket.available()
        bucket.take(available)
        taken += available
        clock.now += 0.1
    assert taken <= 50 + 50 * 10
    assert taken >= 50 * 10 - 5
    assert bucket.wait(10) == pytest.approx(0.1, abs=0.11)


def test_progress_counts_the_backlog_down_with_rate_eta_and_fraction() -> None:
    clock = Clock()
    progress = BackfillProgress(rate_limit=None, clock=clock)
    assert progress.status().state == "idle"
    progress.start(total=1000, expired=100)
    for _ in range(10):
        clock.now += 1
        progress.sent(30)
    status = progress.status()
    assert (status.state, status.sent, status.expired, status.remaining) == (
        "draining",
        300,
        100,
        600,
    )
    assert status.rate == pytest.approx(30.0)
    assert status.eta_seconds == pytest.approx(20.0)
    assert status.fraction_done == pytest.approx(0.4)
    progress.finished()
    assert progress.status().state == "done"
    assert progress.status().remaining == 0


def test_a_log_line_a_minute_while_draining(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = BackfillProgress(rate_limit=200, clock=clock)
    with caplog.at_level(logging.INFO, logger="plantsync.agent.backfill"):
        progress.start(total=100_000, expired=0)
        for _ in range(180):  # three minutes, a batch acknowledged every second
            clock.now += 1
            progress.sent(200)
            progress.tick()
        progress.finished()
        progress.tick()
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith("backlog of 100000 telemetry messages")
    assert "at 200 msg/s" in lines[0]
    drained = [line for line in lines if line.startswith("backfill: ")]
    assert len(drained) == 3
    assert drained[-1].startswith(
        "backfill: 36000 of 100000 sent (36%), 64000 left, 200 msg/s, ETA"
    )
    assert lines[-1].startswith("backfill done: 36000 of 100000")

"""The backfill after an outage, as people and Prometheus see it: one view model for
``/api/v1/status`` (and so ``plantsync status``), one card for the status page, the gauges for
``/metrics``. Pure functions of the uplink's ``BackfillStatus``; no I/O.

    Uplink.backfill (BackfillStatus) ──▶ backfill_view() ──▶ Status.backfill ──▶ backfill_card()
                                     └─▶ backfill_metrics() ──▶ /metrics
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from typing import Literal

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel

from plantsync.agent.backfill import BackfillStatus
from plantsync.buffer.base import OutboxStats


class BackfillView(BaseModel):
    """The backlog of the last outage and how fast it drains."""

    state: Literal["idle", "draining", "done"]
    """idle: no backlog since start; draining; done: the last backlog is delivered."""
    total: int
    """Backlog telemetry when the hub link last came up."""
    sent: int
    expired: int
    """Dropped by ``[uplink].backfill_cutoff``, counted as evicted."""
    remaining: int
    fraction_done: float
    rate_per_second: float
    """Backlog messages acknowledged per second over the last minute."""
    rate_limit: int | None
    """``[uplink].backfill_rate``; None: spare capacity."""
    eta_seconds: float | None
    oldest_age_seconds: float | None
    """Age of the oldest message waiting in the outbox (any lane)."""


def backfill_view(status: BackfillStatus, outbox: OutboxStats, now: float) -> BackfillView:
    """The backfill as the API shows it, with the age of the oldest message in any lane."""
    eta = status.eta_seconds
    oldest = [lane.oldest_created_at for lane in outbox.lanes.values() if lane.oldest_created_at]
    return BackfillView(
        state=status.state,
        total=status.total,
        sent=status.sent,
        expired=status.expired,
        remaining=status.remaining,
        fraction_done=round(status.fraction_done, 4),
        rate_per_second=round(status.rate, 1),
        rate_limit=status.rate_limit,
        eta_seconds=None if eta is None else round(eta, 1),
        oldest_age_seconds=round(max(0.0, now - min(oldest)), 3) if oldest else None,
    )


def backfill_card(view: BackfillView | None) -> str:
    """The status page's backfill card: a progress bar, counts, rate, ETA."""
    heading = "<h3>Backfill after an outage</h3>"
    if view is None or view.state == "idle":
        return f'{heading}<p data-backfill="idle">No backlog since the agent started.</p>'
    pace = "spare capacity" if view.rate_limit is None else f"at most {view.rate_limit} msg/s"
    cut = f", {view.expired} older than the cutoff dropped" if view.expired else ""
    if view.state == "done":
        return (
            f'{heading}<p data-backfill="done">The last backlog ({view.total} messages) is'
            f" delivered{html.escape(cut)}.</p>"
        )
    oldest = view.oldest_age_seconds
    eta = "unknown" if view.eta_seconds is None else _duration(view.eta_seconds)
    return (
        f'{heading}<div class="card backfill" data-backfill="draining">'
        f'<progress max="{view.total}" value="{view.sent + view.expired}">'
        f"{round(100 * view.fraction_done)} %</progress>"
        f"<p>{view.sent} of {view.total} backlog messages sent{html.escape(cut)};"
        f" {view.remaining} left. Live data goes first; the backlog uses {pace}.</p>"
        f"<p>Drain rate {view.rate_per_second:.0f} msg/s, ETA {eta}"
        f"{f'; oldest message waiting {_duration(oldest)}' if oldest else ''}.</p></div>"
    )


def backfill_metrics(status: BackfillStatus) -> Iterator[Metric]:
    """Gauges of the current (or last) backlog; the age of the oldest message waiting is
    ``plantsync_outbox_oldest_age_seconds``."""
    yield _gauge(
        "plantsync_backfill_draining", "1 while a backlog drains", status.state == "draining"
    )
    yield _gauge(
        "plantsync_backfill_backlog_messages", "backlog when the link came up", status.total
    )
    yield _gauge("plantsync_backfill_sent_messages", "of the backlog, acknowledged", status.sent)
    yield _gauge(
        "plantsync_backfill_expired_messages",
        "of the backlog, dropped by the cutoff",
        status.expired,
    )
    yield _gauge("plantsync_backfill_remaining_messages", "of the backlog, left", status.remaining)
    yield _gauge(
        "plantsync_backfill_rate_messages_per_second",
        "backlog acknowledged per second over the last minute",
        status.rate,
    )
    eta = status.eta_seconds
    if eta is not None:
        yield _gauge("plantsync_backfill_eta_seconds", "until the backlog is delivered", eta)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"

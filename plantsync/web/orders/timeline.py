"""One order's life, from the store's durable correlation, as one list of events.

    read_timeline (buffer) ──▶ timeline_view(...) ──▶ OrderTimelineView
        ├─ order     as last applied (``ScheduledOrder``), or None
        └─ events    oldest first: each schedule message received (id, type, revision, verdict,
                     reason, settled at), each ack sent (outcome, delivery), each status change
                     and confirmation of the order (delivery: queued, in flight, sent)

Down messages are dated when they arrived, up messages when they were made; ``settled_at`` and
``sent_at`` say when the verdict fell and when the broker took the message. Free text passes
through the scrubber, like every answer of the API.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from plantsync.buffer.history.timeline import OrderTimeline, ReceivedSchedule, SentMessage
from plantsync.buffer.inbox import InboxStatus
from plantsync.web.apiviews import ScheduledOrder, Scrub, order_view

EventKind = Literal["schedule", "ack", "status", "confirmation", "other"]

_VERDICT = {
    InboxStatus.RECEIVED: "received, not decided yet",
    InboxStatus.RETRY: "waiting: the plant system is unreachable, retried",
    InboxStatus.WAITING_APPROVAL: "waiting for a planner's approval",
    InboxStatus.APPLIED: "applied",
    InboxStatus.REJECTED: "rejected",
    InboxStatus.FAILED: "failed",
}
_KIND: dict[str | None, EventKind] = {
    "schedule.ack": "ack",
    "order.status": "status",
    "production.confirmation": "confirmation",
}


class TimelineEvent(BaseModel):
    """One message in the order's life."""

    at: datetime
    direction: Literal["down", "up"]
    kind: EventKind
    message_id: str
    type: str | None
    correlation_id: str | None
    revision: int | None
    summary: str
    """One line for people: the verdict, the ack's outcome, the state, the quantities."""
    reason: str | None
    delivery: Literal["received", "queued", "in-flight", "sent"]
    settled_at: datetime | None = None
    """A down message: when its verdict fell (None while it waits)."""
    sent_at: datetime | None = None
    """An up message: when the broker acknowledged it (None while queued)."""


class OrderTimelineView(BaseModel):
    order_id: str
    order: ScheduledOrder | None
    """The order as last applied; None when the plant never applied it."""
    events: list[TimelineEvent]


def timeline_view(timeline: OrderTimeline, scrub: Scrub) -> OrderTimelineView:
    events = [_received(row, scrub) for row in timeline.received]
    events += [_sent(message, timeline.order_id, scrub) for message in timeline.sent]
    events.sort(key=lambda event: event.at)
    return OrderTimelineView(
        order_id=timeline.order_id,
        order=order_view(timeline.order) if timeline.order is not None else None,
        events=events,
    )


def _received(row: ReceivedSchedule, scrub: Scrub) -> TimelineEvent:
    settled = row.status not in (InboxStatus.RECEIVED, InboxStatus.WAITING_APPROVAL)
    return TimelineEvent(
        at=_utc(row.received_at),
        direction="down",
        kind="schedule",
        message_id=row.message_id,
        type=row.type,
        correlation_id=row.correlation_id,
        revision=row.revision,
        summary=_VERDICT[row.status],
        reason=scrub(row.reason),
        delivery="received",
        settled_at=_utc(row.updated_at) if settled else None,
    )


def _sent(message: SentMessage, order_id: str, scrub: Scrub) -> TimelineEvent:
    payload = message.payload
    return TimelineEvent(
        at=_utc(message.created_at),
        direction="up",
        kind=_KIND.get(message.type, "other"),
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        revision=_revision(payload, order_id),
        summary=_summary(message.type, payload),
        reason=scrub(_text(payload.get("reason"))),
        delivery=message.delivery,
        sent_at=_utc(message.sent_at) if message.sent_at is not None else None,
    )


def _summary(message_type: str | None, payload: dict[str, Any]) -> str:
    if message_type == "schedule.ack":
        code = _text(payload.get("reason_code"))
        return (
            f"ack {payload.get('outcome')}"
            + (f" ({code})" if code else "")
            + (f" for {payload.get('original_id')}")
        )
    if message_type == "order.status":
        return f"status {payload.get('state')}"
    if message_type == "production.confirmation":
        good, scrap = payload.get("good_quantity") or {}, payload.get("scrap_quantity") or {}
        final = ", final" if payload.get("final") else ""
        return (
            f"confirmation {payload.get('confirmation_id')}: {good.get('value')} {good.get('unit')}"
            f" good, {scrap.get('value')} {scrap.get('unit')} scrap{final}"
        )
    return message_type or "unreadable message"


def _revision(payload: dict[str, Any], order_id: str) -> int | None:
    """The order's revision: the payload's own (status, confirmation) or its entry among an
    ack's ``orders``."""
    revision = payload.get("revision")
    orders = payload.get("orders")
    if revision is None and isinstance(orders, list):
        mine = [o for o in orders if isinstance(o, dict) and o.get("order_id") == order_id]
        revision = mine[0].get("revision") if mine else None
    return revision if isinstance(revision, int) and not isinstance(revision, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)

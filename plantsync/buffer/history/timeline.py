"""One order's life as the store remembers it: ``plantsync order ORDER_ID``, the API's
``/api/v1/orders/{id}/timeline`` and the status page's order view all read it here.

    read_timeline(path, order_id) -> OrderTimeline      read-only; never writes, never migrates

    OrderTimeline
      ├─ order      the last-known-good row: revision, status, the message and correlation
      │             id that last applied it                         (``orders``)
      ├─ received   every schedule message kept that concerns it: id, type, revision, verdict,
      │             reason, when it arrived and when it was settled  (``inbox``)
      └─ sent       every ack of those messages and every status change and confirmation of
                    the order, queued or in flight (``outbox``) or sent (``sent_archive``)

The durable correlation is what ties them: an inbox row names the orders it concerns
(``order_ids``), an ack names the message it answers (``original_id``) and the orders it
concerned, and an order's status and confirmations share its stream (``order/<id>``). What the
retention has pruned (settled inbox rows after ``keep_processed``, the archive after
``archive_max_age``) is gone from the timeline too; the order's row never is.

It opens the file read-only beside the running agent, as ``inspect.py`` does, so the CLI works
whether the agent runs or not, and the agent's web surface runs it in a thread without taking
the writer's lock. The outbox is read through its (lane, status, id) index: only the business
lane; the sent archive is scanned (it is bounded by ``archive_max_size``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from plantsync.buffer.base import Lane, RowStatus
from plantsync.buffer.inbox import InboxStatus, OrderState
from plantsync.buffer.inbox_sqlite import order_state
from plantsync.buffer.inspect import read_only

_ORDER = (
    "SELECT order_id, revision, work_center, status, order_json, updated_at, planned_start,"
    " correlation_id, message_id FROM orders WHERE order_id = ?"
)
_RECEIVED = (
    "SELECT message_id, topic, payload, received_at, status, attempts, reason, updated_at"
    " FROM inbox WHERE EXISTS (SELECT 1 FROM json_each(inbox.order_ids) AS o WHERE o.value = ?1)"
    " ORDER BY id"
)
# An ack belongs to the order when it names the order, or answers a message that concerned it.
# Payloads are JSON text stored as BLOB: CAST, so no SQLite version reads them as JSONB.
_QUEUED = (
    "SELECT message_id, stream, payload, created_at, status FROM outbox"
    " WHERE lane = ?2 AND (stream = ?3 OR (stream = 'acks' AND ("
    "  EXISTS (SELECT 1 FROM json_each(CAST(outbox.payload AS TEXT), '$.payload.orders') AS o"
    "   WHERE json_extract(o.value, '$.order_id') = ?1)"
    "  OR json_extract(CAST(outbox.payload AS TEXT), '$.payload.original_id') IN"
    "   (SELECT message_id FROM inbox WHERE EXISTS"
    "    (SELECT 1 FROM json_each(inbox.order_ids) AS i WHERE i.value = ?1)))))"
    " ORDER BY id"
)
_SENT = (
    "SELECT message_id, stream, payload, created_at, sent_at FROM sent_archive"
    " WHERE lane = ?2 AND (stream = ?3 OR (stream = 'acks' AND ("
    "  EXISTS (SELECT 1 FROM json_each(CAST(sent_archive.payload AS TEXT), '$.payload.orders')"
    "   AS o WHERE json_extract(o.value, '$.order_id') = ?1)"
    "  OR json_extract(CAST(sent_archive.payload AS TEXT), '$.payload.original_id') IN"
    "   (SELECT message_id FROM inbox WHERE EXISTS"
    "    (SELECT 1 FROM json_each(inbox.order_ids) AS i WHERE i.value = ?1)))))"
    " ORDER BY id"
)
_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

Delivery = Literal["queued", "in-flight", "sent"]


@dataclass(frozen=True, slots=True)
class ReceivedSchedule:
    """One down message that concerns the order, and what the agent decided about it."""

    message_id: str
    type: str | None
    revision: int | None
    """The order's revision in this message (None when it cannot be read)."""
    correlation_id: str | None
    topic: str
    received_at: float
    status: InboxStatus
    attempts: int
    reason: str | None
    updated_at: float
    """When it was last settled (applied, held, rejected, retried); = received if never."""


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One up message about the order: an ack, an order status or a confirmation."""

    message_id: str
    type: str | None
    correlation_id: str | None
    created_at: float
    delivery: Delivery
    sent_at: float | None
    """When the broker acknowledged it (from the sent archive); None while queued."""
    payload: dict[str, Any]
    """The message's ``payload`` object (the contract's JSON); {} when unreadable."""


@dataclass(frozen=True, slots=True)
class OrderTimeline:
    """What the store holds of one order; every part empty when it holds nothing."""

    order_id: str
    order: OrderState | None
    received: tuple[ReceivedSchedule, ...]
    sent: tuple[SentMessage, ...]

    @property
    def known(self) -> bool:
        return self.order is not None or bool(self.received) or bool(self.sent)


def read_timeline(path: Path, order_id: str) -> OrderTimeline:
    """The timeline of ``order_id`` from the store at ``path``, read-only.

    Raises ``StoreError`` when there is no file at ``path`` or it cannot be read."""
    stream = f"order/{order_id}"
    with read_only(path) as connection:
        if not has_table(connection, "orders"):  # a store older than the inbox: no orders
            return OrderTimeline(order_id, None, (), ())
        row = connection.execute(_ORDER, (order_id,)).fetchone()
        received = tuple(
            _received(found, order_id) for found in connection.execute(_RECEIVED, (order_id,))
        )
        params = (order_id, Lane.BUSINESS, stream)
        sent = [_queued(found) for found in connection.execute(_QUEUED, params)]
        if has_table(connection, "sent_archive"):
            sent += [_archived(found) for found in connection.execute(_SENT, params)]
    sent.sort(key=lambda message: message.created_at)
    return OrderTimeline(order_id, order_state(row) if row else None, received, tuple(sent))


def has_table(connection: sqlite3.Connection, name: str) -> bool:
    return connection.execute(_HAS_TABLE, (name,)).fetchone() is not None


def _received(row: tuple[Any, ...], order_id: str) -> ReceivedSchedule:
    message_id, topic, payload, received_at, status, attempts, reason, updated_at = row
    message = _json(payload)
    return ReceivedSchedule(
        message_id=message_id,
        type=_text(message.get("type")),
        revision=_revision(message.get("payload"), order_id),
        correlation_id=_text(message.get("correlation_id")),
        topic=topic,
        received_at=received_at,
        status=InboxStatus(status),
        attempts=attempts,
        reason=reason,
        updated_at=updated_at,
    )


def _queued(row: tuple[Any, ...]) -> SentMessage:
    message_id, _stream, payload, created_at, status = row
    delivery: Delivery = "in-flight" if status == RowStatus.INFLIGHT else "queued"
    return _sent(message_id, payload, created_at, delivery, None)


def _archived(row: tuple[Any, ...]) -> SentMessage:
    message_id, _stream, payload, created_at, sent_at = row
    return _sent(message_id, payload, created_at, "sent", sent_at)


def _sent(
    message_id: str, payload: bytes, created_at: float, delivery: Delivery, sent_at: float | None
) -> SentMessage:
    message = _json(payload)
    inner = message.get("payload")
    return SentMessage(
        message_id=message_id,
        type=_text(message.get("type")),
        correlation_id=_text(message.get("correlation_id")),
        created_at=created_at,
        delivery=delivery,
        sent_at=sent_at,
        payload=inner if isinstance(inner, dict) else {},
    )


def _revision(payload: object, order_id: str) -> int | None:
    """The order's revision in a down message's payload: its own entry of ``orders`` (a
    release, a revision, a snapshot) or the payload's ``revision`` (hold, cancel, …)."""
    if not isinstance(payload, dict):
        return None
    orders = payload.get("orders")
    if isinstance(orders, list):
        for order in orders:
            if isinstance(order, dict) and order.get("order_id") == order_id:
                return _integer(order.get("revision"))
        return None
    return _integer(payload.get("revision"))


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(bytes(payload))
    except ValueError:  # what it was committed as is kept; an unreadable one shows as such
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

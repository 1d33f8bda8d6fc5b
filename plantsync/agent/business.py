"""Business messages up: order status and production confirmations from plant systems, and
the acks and resync requests the downlink answers HQ with, each a record for the outbox.

    MES (local API) ──┐
    Job Control ──────┴─▶ BusinessWriter ─▶ outbox, business lane, stream order/<order_id>
    OPC UA alarms ──────▶ BusinessWriter.alarm ─▶ outbox, business lane, stream alarm/<link>
    history gaps ───────▶ BusinessWriter.gap ───▶ outbox, business lane, stream gap/<link>
    Downlink ─▶ ack_record (stream acks), resync_record (stream resync) ─▶ its own transaction

A confirmation is committed to the outbox before its producer hears "accepted" (the API's 202),
so a confirmation the plant reported is never lost, and status and confirmations of one order
share one stream: HQ sees them in the order they happened, numbered without gaps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.base import Lane, Outbox, Record
from plantsync.contracts import Envelope, Topics, new_message_id
from plantsync.contracts.alarms import Alarm, AlarmMessage, alarm_stream
from plantsync.contracts.gaps import HistoryGap, HistoryGapMessage, gap_stream
from plantsync.contracts.orders import (
    ACK_STREAM,
    RESYNC_STREAM,
    AckOutcome,
    OrderRef,
    OrderStatus,
    OrderStatusMessage,
    ProductionConfirmation,
    ProductionConfirmationMessage,
    ReasonCode,
    ResyncReason,
    ResyncRequest,
    ResyncRequestMessage,
    ScheduleAck,
    ScheduleAckMessage,
    order_stream,
)


class BusinessWriter:
    """Commits order.status and production.confirmation messages to the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        sequencer: Sequencer,
        outbox_changed: asyncio.Event,
    ) -> None:
        self._outbox, self._topics = outbox, topics
        self._sequencer, self._outbox_changed = sequencer, outbox_changed

    async def order_status(
        self, status: OrderStatus, *, source: str, correlation_id: str | None = None
    ) -> str:
        """Commit one ``order.status``; returns its message id. Raises StoreFull when full."""
        topic = self._topics.order_status(status.order_id)
        return await self._write(
            OrderStatusMessage,
            status,
            status.order_id,
            topic,
            status.changed_at,
            source,
            correlation_id,
        )

    async def confirmation(
        self,
        confirmation: ProductionConfirmation,
        *,
        source: str,
        correlation_id: str | None = None,
    ) -> str:
        """Commit one ``production.confirmation``; returns its message id. Raises StoreFull."""
        topic = self._topics.confirmation(confirmation.order_id)
        return await self._write(
            ProductionConfirmationMessage,
            confirmation,
            confirmation.order_id,
            topic,
            confirmation.actual_end,
            source,
            correlation_id,
        )

    async def alarm(self, alarm: Alarm, *, source: str) -> str:
        """Commit one ``alarm`` of link ``source``; returns its message id. Raises StoreFull."""
        stream = alarm_stream(source)
        async with self._sequencer.assigning() as next_seq:
            message = AlarmMessage(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=alarm.time,
                payload=alarm,
            )
            await self._outbox.add([business_record(message, self._topics.alarm)])
        self._outbox_changed.set()
        return message.id

    async def gap(self, gap: HistoryGap, *, source: str) -> str:
        """Commit one ``history.gap`` of link ``source``; returns its message id."""
        stream = gap_stream(source)
        async with self._sequencer.assigning() as next_seq:
            message = HistoryGapMessage(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=gap.end,
                payload=gap,
            )
            await self._outbox.add([business_record(message, self._topics.gap)])
        self._outbox_changed.set()
        return message.id

    async def _write(
        self,
        model: type[OrderStatusMessage] | type[ProductionConfirmationMessage],
        payload: Any,
        order_id: str,
        topic: str,
        event_time: datetime,
        source: str,
        correlation_id: str | None,
    ) -> str:
        stream = order_stream(order_id)
        async with self._sequencer.assigning() as next_seq:
            message = model(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=event_time,
                correlation_id=correlation_id,
                payload=payload,
            )
            await self._outbox.add([business_record(message, topic)])
        self._outbox_changed.set()
        return message.id


def business_record(message: Envelope[Any], topic: str) -> Record:
    """An outbox row in the business lane (never evicted) for one up message."""
    payload = message.model_dump_json().encode()
    return Record(
        message.id, Lane.BUSINESS, message.stream, message.seq, topic, payload, time.time()
    )


@dataclass(frozen=True)
class Acknowledgement:
    """What to tell HQ about one down message."""

    original_id: str
    original_type: str | None
    outcome: AckOutcome
    correlation_id: str | None = None
    reason_code: ReasonCode | None = None
    reason: str | None = None
    orders: tuple[OrderRef, ...] = ()


def ack_record(topics: Topics, next_seq: Callable[[str], int], ack: Acknowledgement) -> Record:
    """A ``schedule.ack`` for HQ on the ``acks`` stream."""
    message = ScheduleAckMessage(
        id=new_message_id(),
        site=topics.site,
        source="agent",
        seq=next_seq(ACK_STREAM),
        event_time=datetime.now(UTC),
        correlation_id=ack.correlation_id or ack.original_id,
        payload=ScheduleAck(
            original_id=ack.original_id[:128],
            original_type=ack.original_type,
            outcome=ack.outcome,
            reason_code=ack.reason_code,
            reason=ack.reason[:1000] if ack.reason else None,
            orders=list(ack.orders),
        ),
    )
    return business_record(message, topics.ack)


def resync_record(
    topics: Topics,
    next_seq: Callable[[str], int],
    reason: ResyncReason,
    last: int,
    received: int | None,
) -> Record:
    """A ``resync.request``: HQ is asked for a snapshot of the site's open orders."""
    message = ResyncRequestMessage(
        id=new_message_id(),
        site=topics.site,
        source="agent",
        seq=next_seq(RESYNC_STREAM),
        event_time=datetime.now(UTC),
        payload=ResyncRequest(reason=reason, last_seq_seen=last, received_seq=received),
    )
    return business_record(message, topics.resync)

"""Order status and production confirmations from plant systems, made durable for HQ.

    MES (local API) ──┐
    Job Control ──────┴─▶ BusinessWriter ─▶ outbox, business lane, stream order/<order_id>

A confirmation is committed to the outbox before its producer hears "accepted" (the API's 202),
so a confirmation the plant reported is never lost, and status and confirmations of one order
share one stream: HQ sees them in the order they happened, numbered without gaps.
"""

from __future__ import annotations

import asyncio
import time

from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.base import Lane, Outbox, Record
from plantsync.contracts import Topics, new_message_id
from plantsync.contracts.orders import (
    OrderStatus,
    OrderStatusMessage,
    ProductionConfirmation,
    ProductionConfirmationMessage,
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
        stream = order_stream(status.order_id)
        async with self._sequencer.assigning() as next_seq:
            message = OrderStatusMessage(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=status.changed_at,
                correlation_id=correlation_id,
                payload=status,
            )
            await self._commit(
                message.id,
                stream,
                message.seq,
                self._topics.order_status(status.order_id),
                message.model_dump_json().encode(),
            )
        return message.id

    async def confirmation(
        self,
        confirmation: ProductionConfirmation,
        *,
        source: str,
        correlation_id: str | None = None,
    ) -> str:
        """Commit one ``production.confirmation``; returns its message id. Raises StoreFull."""
        stream = order_stream(confirmation.order_id)
        async with self._sequencer.assigning() as next_seq:
            message = ProductionConfirmationMessage(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=confirmation.actual_end,
                correlation_id=correlation_id,
                payload=confirmation,
            )
            await self._commit(
                message.id,
                stream,
                message.seq,
                self._topics.confirmation(confirmation.order_id),
                message.model_dump_json().encode(),
            )
        return message.id

    async def _commit(
        self, message_id: str, stream: str, seq: int, topic: str, payload: bytes
    ) -> None:
        record = Record(message_id, Lane.BUSINESS, stream, seq, topic, payload, time.time())
        await self._outbox.add([record])
        self._outbox_changed.set()

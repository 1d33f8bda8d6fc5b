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

Every request that comes with a key (``ClientKey``: a confirmation id, an Idempotency-Key
header) is committed once: the key, the message and the answer the client was given are one
transaction in the store (``buffer/idempotency``). A retry gets the kept answer (the same
message id) and HQ no second message, also after a restart; the same key with other content
is a ``KeyConflict`` that names the fields that differ. An order that is not in the
last-known-good schedule is reported all the same, flagged ``unplanned``, and counted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.base import Lane, Record
from plantsync.buffer.idempotency import KeptAnswer, KeyedRequest, Reply
from plantsync.buffer.store import Store
from plantsync.contracts import Contract, Envelope, Topics, new_message_id
from plantsync.contracts.alarms import Alarm, AlarmMessage, alarm_stream
from plantsync.contracts.machine import HistoryGap, HistoryGapMessage, gap_stream
from plantsync.contracts.orders import (
    ACK_STREAM,
    RESYNC_STREAM,
    AckOutcome,
    ConfirmationPayload,
    JobOrderState,
    OrderRef,
    OrderStatus,
    OrderStatusMessage,
    OrderStatusPayload,
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

_CLOSING = frozenset({JobOrderState.ENDED, JobOrderState.ABORTED})
"""Order states after which the plant is done with an order: its retention starts (as after
its final confirmation); ``store.keep_closed_orders`` later it leaves the schedule."""


@dataclass(frozen=True)
class ClientKey:
    """The key a request from the plant came with, and what to answer a retry.

    ``kind`` names the way in and what the key is (``KINDS``), so one client's key cannot
    answer for another endpoint. With ``compare`` a retry with other content is a
    ``KeyConflict``; without, the key alone names the request (a Job Control response read
    again after a restart has a later ``actual_end`` but is the same report)."""

    kind: str
    key: str
    reply: Reply | None = None
    compare: bool = True


KINDS = {
    "api:confirmation_id": "the confirmation_id of a confirmation posted to the local API",
    "api:confirmations:Idempotency-Key": "the Idempotency-Key header of such a post",
    "api:order-status:Idempotency-Key": "the Idempotency-Key header of an order-status post",
    "api:order-status:content": "an order-status post without one: its content's sha256",
    "plant:confirmation_id": "a confirmation read from Job Control",
}
"""The kinds of key the agent keeps (``idempotency_keys.kind``)."""


@dataclass(frozen=True)
class Written:
    """A committed message's id; ``replayed`` when the request was a retry of a kept key (then
    nothing was written and HQ gets no second message)."""

    message_id: str
    replayed: KeptAnswer | None = None
    unplanned: bool = False


class KeyConflict(Exception):
    """A key came again with other content: the first request stands, this one is refused."""

    def __init__(self, key: ClientKey, kept: KeptAnswer, differing: list[str]) -> None:
        self.key, self.kept, self.differing = key, kept, differing
        when = datetime.fromtimestamp(kept.created_at, UTC).isoformat(timespec="seconds")
        super().__init__(
            f"key {key.key!r} ({KINDS.get(key.kind, key.kind)}) was first used at {when} for"
            f" other content: {'; '.join(differing) or 'the content differs'}. The first"
            f" request (message {kept.message_id}) stands; send this one under a new key"
        )


@dataclass
class BusinessCounters:
    """What the writer counted since start, for the metrics and the status page."""

    unplanned_confirmations: int = 0
    unplanned_statuses: int = 0
    replayed: int = 0
    """Retries answered with the kept answer, nothing sent again."""
    conflicts: int = 0
    """Keys that came again with other content (refused)."""


class BusinessWriter:
    """Commits order.status and production.confirmation messages to the outbox, each keyed
    request once; flags orders that are not in the last-known-good schedule as unplanned."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        sequencer: Sequencer,
        outbox_changed: asyncio.Event,
    ) -> None:
        self._store, self._topics = store, topics
        self._sequencer, self._outbox_changed = sequencer, outbox_changed
        self.counters = BusinessCounters()

    async def order_status(
        self,
        status: OrderStatus,
        *,
        source: str,
        correlation_id: str | None = None,
        key: ClientKey | None = None,
    ) -> Written:
        """Commit one ``order.status`` (once per ``key``). Raises StoreFull when full,
        KeyConflict when ``key`` was used for other content."""
        topic = self._topics.order_status(status.order_id)
        written = await self._write(
            _Message(OrderStatusMessage, OrderStatusPayload, status, topic, status.changed_at),
            source,
            correlation_id,
            key,
        )
        if written.unplanned and written.replayed is None:
            self.counters.unplanned_statuses += 1
        if status.state in _CLOSING and not written.unplanned:
            await self._store.close_order(status.order_id, self._store.inbox.clock())
        return written

    async def confirmation(
        self,
        confirmation: ProductionConfirmation,
        *,
        source: str,
        correlation_id: str | None = None,
        key: ClientKey | None = None,
    ) -> Written:
        """Commit one ``production.confirmation`` (once per ``key``). Raises StoreFull when
        full, KeyConflict when ``key`` was used for other content."""
        topic = self._topics.confirmation(confirmation.order_id)
        written = await self._write(
            _Message(
                ProductionConfirmationMessage,
                ConfirmationPayload,
                confirmation,
                topic,
                confirmation.actual_end,
            ),
            source,
            correlation_id,
            key,
        )
        if written.unplanned and written.replayed is None:
            self.counters.unplanned_confirmations += 1
        if confirmation.final and not written.unplanned:
            await self._store.close_order(confirmation.order_id, self._store.inbox.clock())
        return written

    async def alarm(self, alarm: Alarm, *, source: str) -> str:
        """Commit one ``alarm`` of link ``source``; returns its message id. Raises StoreFull."""
        stream, topic = alarm_stream(source), self._topics.alarm
        return await self._event(AlarmMessage, alarm, stream, topic, alarm.time, source)

    async def gap(self, gap: HistoryGap, *, source: str) -> str:
        """Commit one ``history.gap`` of link ``source``; returns its message id."""
        stream, topic = gap_stream(source), self._topics.gap
        return await self._event(HistoryGapMessage, gap, stream, topic, gap.end, source)

    async def _event(
        self,
        model: type[AlarmMessage] | type[HistoryGapMessage],
        payload: Any,
        stream: str,
        topic: str,
        event_time: datetime,
        source: str,
    ) -> str:
        """One business message from the plant's own events (no key: the event is its id)."""
        async with self._sequencer.assigning() as next_seq:
            message = model(
                id=new_message_id(),
                site=self._topics.site,
                source=source,
                stream=stream,
                seq=next_seq(stream),
                event_time=event_time,
                payload=payload,
            )
            await self._store.outbox.add([business_record(message, topic)])
        self._outbox_changed.set()
        return message.id

    async def _write(
        self, what: _Message, source: str, correlation_id: str | None, key: ClientKey | None
    ) -> Written:
        order_id = what.report.order_id
        unplanned = await self._store.inbox.order(order_id) is None
        stream = order_stream(order_id)
        built: list[Record] = []
        async with self._sequencer.assigning() as next_seq:

            def build() -> Record:
                message = what.model.model_validate(
                    {
                        "id": new_message_id(),
                        "site": self._topics.site,
                        "source": source,
                        "stream": stream,
                        "seq": next_seq(stream),
                        "event_time": what.event_time,
                        "correlation_id": correlation_id,
                        "payload": what.payload(**dict(what.report), unplanned=unplanned),
                    }
                )
                built.append(business_record(message, what.topic))
                return built[-1]

            if key is None:
                await self._store.outbox.add([build()])
            else:
                request = KeyedRequest(key.kind, key.key, _content(what.report, key))
                kept = await self._store.keys.add_once(request, build, key.reply)
                if kept is not None:  # build() never ran: no sequence number was taken
                    return self._replayed(key, request, kept)
        self._outbox_changed.set()
        return Written(built[0].message_id, unplanned=unplanned)

    def _replayed(self, key: ClientKey, request: KeyedRequest, kept: KeptAnswer) -> Written:
        if not kept.same_request(request):
            self.counters.conflicts += 1
            raise KeyConflict(key, kept, differences(kept.request, request.request))
        self.counters.replayed += 1
        return Written(kept.message_id, replayed=kept)


@dataclass(frozen=True)
class _Message:
    """One report on its way to becoming a message: its model, its payload type, the topic."""

    model: type[OrderStatusMessage] | type[ProductionConfirmationMessage]
    payload: type[OrderStatusPayload] | type[ConfirmationPayload]
    report: OrderStatus | ProductionConfirmation
    topic: str
    event_time: datetime


def _content(report: Contract, key: ClientKey) -> bytes:
    """What a retry is compared by: the report's canonical JSON, or the key alone."""
    return report.model_dump_json().encode() if key.compare else key.key.encode()


def differences(before: bytes, now: bytes, *, limit: int = 5) -> list[str]:
    """The fields two JSON objects disagree on, dotted for nested ones, with both values."""
    found: list[str] = []
    _differ(json.loads(before), json.loads(now), "", found)
    shown = found[:limit]
    if len(found) > limit:
        shown.append(f"and {len(found) - limit} more")
    return shown


def _differ(before: Any, now: Any, path: str, found: list[str]) -> None:
    if isinstance(before, dict) and isinstance(now, dict):
        for name in sorted(before.keys() | now.keys()):
            _differ(before.get(name), now.get(name), f"{path}.{name}" if path else name, found)
    elif before != now:
        found.append(f"{path or 'the body'} was {_shown(before)}, is {_shown(now)} now")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


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

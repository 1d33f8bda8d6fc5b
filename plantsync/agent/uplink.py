"""Outbox → hub: QoS 1 publishing that deletes a row only after the broker's PUBACK.

    outbox.begin(free slots) ──publish──▶ broker
          ▲                                  │ PUBACK
          │ nack (link dropped)              ▼
          └──────────────────── confirmed ──▶ outbox.ack (batched)

The window of unacknowledged publishes is bounded here (``max_inflight``), not in paho, whose
window rescans on every PUBACK (MEASURED.md). When the link drops, every row still in flight is
returned to ready and re-sent in its original order on the next connection; a message whose
PUBACK was lost is therefore sent twice, with the same id, which is what consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from dataclasses import dataclass, field

from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.base import Claimed, Outbox
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable, LinkError

log = logging.getLogger(__name__)


@dataclass
class UplinkCounters:
    published: int = 0
    acked: int = 0
    requeued: int = 0


@dataclass
class _Flight:
    """Rows handed to one connection and not yet settled."""

    inflight: set[int] = field(default_factory=set)
    confirmed: list[int] = field(default_factory=list)
    failure: BaseException | None = None
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    last_progress: float = field(default_factory=time.monotonic)


class Uplink:
    """Drains the outbox into one hub connection at a time."""

    def __init__(
        self,
        outbox: Outbox,
        health: LinkHealth,
        *,
        wakeup: asyncio.Event,
        max_inflight: int,
        stall_timeout: float,
    ) -> None:
        self._outbox, self._health, self._wakeup = outbox, health, wakeup
        self._max_inflight, self._stall_timeout = max_inflight, stall_timeout
        self.counters = UplinkCounters()

    async def serve(self, connection: HubConnection, stopping: asyncio.Event) -> None:
        """Publish until the link drops (raises a LinkError) or, after ``stopping``, until
        nothing is left to send and every publish is acknowledged."""
        flight = _Flight()
        closed = asyncio.create_task(connection.wait_closed(), name="uplink-wait-closed")
        try:
            await self._pump(connection, flight, stopping, closed)
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await closed
            await asyncio.shield(self._settle(flight))

    async def _pump(
        self,
        connection: HubConnection,
        flight: _Flight,
        stopping: asyncio.Event,
        closed: asyncio.Task[None],
    ) -> None:
        while True:
            flight.progress.clear()
            await self._persist_confirmed(flight)
            if flight.failure is not None:
                raise flight.failure
            self._wakeup.clear()
            free = self._max_inflight - len(flight.inflight)
            claimed = await self._outbox.begin(free) if free > 0 else []
            if claimed:
                self._publish(connection, flight, claimed)
                continue
            if stopping.is_set() and not flight.inflight:
                return
            self._check_stall(flight)
            await _first_of(self._wakeup, flight.progress, stopping, closed, within=1.0)
            if closed.done():
                closed.result()  # raises HubUnavailable: the link dropped while idle

    def _publish(self, connection: HubConnection, flight: _Flight, claimed: list[Claimed]) -> None:
        if not flight.inflight:
            flight.last_progress = time.monotonic()
        for row in claimed:
            flight.inflight.add(row.row_id)
            future = connection.publish(row.record.topic, row.record.payload, qos=1)
            future.add_done_callback(functools.partial(_settled, flight, row.row_id))
        self.counters.published += len(claimed)

    async def _persist_confirmed(self, flight: _Flight) -> None:
        if not flight.confirmed:
            return
        confirmed, flight.confirmed = flight.confirmed, []
        await self._outbox.ack(confirmed)
        self.counters.acked += len(confirmed)
        self._health.touch()

    def _check_stall(self, flight: _Flight) -> None:
        waited = time.monotonic() - flight.last_progress
        if flight.inflight and waited > self._stall_timeout:
            raise HubUnavailable(f"connected, but no PUBACK for {waited:.0f} s: reconnecting")

    async def _settle(self, flight: _Flight) -> None:
        """Persist what the broker confirmed; return everything else to ready, in order."""
        await self._persist_confirmed(flight)
        unconfirmed = sorted(flight.inflight)
        flight.inflight.clear()
        if unconfirmed:
            await self._outbox.nack(unconfirmed)
            self.counters.requeued += len(unconfirmed)


def _settled(flight: _Flight, row_id: int, future: asyncio.Future[None]) -> None:
    """PUBACK (or failure) callback: runs on the event loop, never blocks."""
    if row_id not in flight.inflight:
        return  # settled already, by a failure that ended the connection
    if future.cancelled() or future.exception() is not None:
        if flight.failure is None:
            error = None if future.cancelled() else future.exception()
            flight.failure = HubUnavailable(f"publish not acknowledged: {error}")
            flight.failure.__cause__ = error
    else:
        flight.inflight.discard(row_id)
        flight.confirmed.append(row_id)
        flight.last_progress = time.monotonic()
    flight.progress.set()


async def _first_of(*waitables: asyncio.Event | asyncio.Task[None], within: float) -> None:
    """Wait until any event is set or any task is done, or ``within`` seconds pass."""
    waiters = [
        asyncio.ensure_future(item.wait()) if isinstance(item, asyncio.Event) else item
        for item in waitables
    ]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter, item in zip(waiters, waitables, strict=True):
            if isinstance(item, asyncio.Event):
                waiter.cancel()

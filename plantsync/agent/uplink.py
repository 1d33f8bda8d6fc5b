"""Outbox → hub: QoS 1 publishing that deletes a row only after the broker's PUBACK.

    outbox.begin ──▶ connection.send ──▶ network thread: publishes within the window ──▶ broker
          ▲          (a batch; three windows                                           │ PUBACK
          │           queued at most)                                                   ▼
          │ nack (link dropped: all sent, unacknowledged)     connection.acknowledged() (keys)
          └───────────────────────────────── confirmed ──▶ outbox.ack (batched)

The window of unacknowledged publishes (``max_inflight``) is kept by the connection's network
thread, not by paho, whose window rescans on every PUBACK (docs/measured.md), and not here: the
thread refills it as PUBACKs arrive, so no message waits for this event loop, and messages
cross between the threads in batches only (docs/performance.md). Rows are claimed up to three
windows beyond it, two windows at a time, and deleted in batches of four windows: each claim
or delete costs a few aiosqlite awaits (≈ 0.1 ms each), whatever its size.

When the link drops, every row sent and not acknowledged is returned to ready and re-sent in
its original order on the next connection; a message whose PUBACK was lost is therefore sent
twice, with the same id, which is what consumers de-duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.base import Claimed, Outbox
from plantsync.drivers.hub import Hub
from plantsync.errors import HubUnavailable, LinkError, PlantsyncError

log = logging.getLogger(__name__)

_DELETE_DELAY = 0.05
"""Longest a confirmed row waits for its batch delete; a lost delete only means a duplicate."""


@dataclass
class UplinkCounters:
    published: int = 0
    acked: int = 0
    requeued: int = 0


@dataclass
class _Flight:
    """Rows handed to one connection and not yet settled."""

    sent: set[int] = field(default_factory=set)
    """Given to ``connection.send``, not acknowledged yet: in flight or queued in its thread."""
    confirmed: list[int] = field(default_factory=list)
    confirmed_since: float = 0.0
    """When the oldest of ``confirmed`` was acknowledged: deletes wait for a batch, not long."""
    exhausted: bool = False
    """The last claim found nothing; claim again on a wakeup or after a wait."""
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
        self._stall_timeout = stall_timeout
        self._capacity = 4 * max_inflight
        """Rows sent and not acknowledged: the window in flight and three windows queued."""
        self._claim_at = 2 * max_inflight
        """Claim once this much room is free: large batches, not a row at a time."""
        self._delete_at = 4 * max_inflight
        """Delete once this many rows are confirmed (or ``_DELETE_DELAY`` passed, or nothing
        else is in flight): a delete is a transaction of several awaits, ≈ 0.1 ms each."""
        self.counters = UplinkCounters()
        self._unsettled = _Flight()
        """The rows of the last session, kept when it could not settle them (disk full): the
        next session settles them first, so they neither stay claimed until a restart nor
        lose the PUBACKs already received."""

    async def serve(self, connection: Hub, stopping: asyncio.Event) -> None:
        """Publish until the link drops (raises a LinkError) or, after ``stopping``, until
        nothing is left to send and every publish is acknowledged."""
        await self._settle(self._unsettled)
        flight = self._unsettled = _Flight()
        closed = asyncio.create_task(connection.wait_closed(), name="uplink-wait-closed")
        try:
            await self._pump(connection, flight, stopping, closed)
        finally:
            closed.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await closed
            with contextlib.suppress(LinkError):
                self._collect(connection, flight)  # PUBACKs that came before the end count
            await asyncio.shield(self._settle(flight))

    async def _pump(
        self,
        connection: Hub,
        flight: _Flight,
        stopping: asyncio.Event,
        closed: asyncio.Task[None],
    ) -> None:
        # Each turn does at most one database call: a claim while the connection has room for
        # two windows, otherwise the batched delete of what the broker confirmed, once due.
        while True:
            self._collect(connection, flight)
            hungry = self._capacity - len(flight.sent) >= self._claim_at
            if hungry and (not flight.exhausted or self._wakeup.is_set()):
                self._wakeup.clear()
                claimed = await self._outbox.begin(self._capacity - len(flight.sent))
                flight.exhausted = not claimed
                if claimed:
                    self._send(connection, flight, claimed)
                    continue
            delay = self._delete_delay(flight, stopping)
            if delay <= 0:
                await self._persist_confirmed(flight)
                continue
            if stopping.is_set() and not flight.sent:
                return
            self._check_stall(flight)
            # The wakeup (new rows) matters only when there is room to claim them.
            waitables = (connection.acknowledgement_ready, stopping, closed)
            await _first_of(*((*waitables, self._wakeup) if hungry else waitables), within=delay)
            flight.exhausted = False
            if closed.done():
                closed.result()  # raises HubUnavailable: the link dropped while idle

    def _delete_delay(self, flight: _Flight, stopping: asyncio.Event) -> float:
        """Seconds until the confirmed rows are due for deletion (≤ 0: now; 1: none)."""
        if not flight.confirmed:
            return 1.0
        if len(flight.confirmed) >= self._delete_at or not flight.sent or stopping.is_set():
            return 0.0
        return flight.confirmed_since + _DELETE_DELAY - time.monotonic()

    def _send(self, connection: Hub, flight: _Flight, claimed: Sequence[Claimed]) -> None:
        """Hand claimed rows to the connection, in claim order, as one batch."""
        if not flight.sent:
            flight.last_progress = time.monotonic()
        flight.sent.update(row.row_id for row in claimed)
        connection.send([(row.row_id, row.record.topic, row.record.payload) for row in claimed])
        self.counters.published += len(claimed)

    def _collect(self, connection: Hub, flight: _Flight) -> None:
        """Take the keys the broker acknowledged since the last turn."""
        try:
            acknowledged = connection.acknowledged()
        except PlantsyncError as exc:
            raise HubUnavailable(f"publish not acknowledged: {exc}") from exc
        if acknowledged:
            flight.sent.difference_update(acknowledged)
            flight.last_progress = time.monotonic()
            if not flight.confirmed:
                flight.confirmed_since = flight.last_progress
            flight.confirmed += acknowledged

    async def _persist_confirmed(self, flight: _Flight) -> None:
        if not flight.confirmed:
            return
        confirmed, flight.confirmed = flight.confirmed, []
        try:
            await self._outbox.ack(confirmed)
        except BaseException:
            flight.confirmed[:0] = confirmed  # still to delete: the next try deletes them
            raise
        self.counters.acked += len(confirmed)
        self._health.touch()

    def _check_stall(self, flight: _Flight) -> None:
        waited = time.monotonic() - flight.last_progress
        if flight.sent and waited > self._stall_timeout:
            raise HubUnavailable(f"connected, but no PUBACK for {waited:.0f} s: reconnecting")

    async def _settle(self, flight: _Flight) -> None:
        """Persist what the broker confirmed; return everything else to ready, in order."""
        await self._persist_confirmed(flight)
        unconfirmed = sorted(flight.sent)
        flight.sent.clear()
        if unconfirmed:
            try:
                await self._outbox.nack(unconfirmed)
            except BaseException:
                flight.sent.update(unconfirmed)  # still claimed: the next session retries
                raise
            self.counters.requeued += len(unconfirmed)


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

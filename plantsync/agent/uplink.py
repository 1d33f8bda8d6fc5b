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

When the link drops, every row sent and not acknowledged is returned to ready and re-sent on
the next connection; a message whose PUBACK was lost is therefore sent twice, with the same id,
which is what consumers de-duplicate.

Live first, the backlog beside it (``[uplink]``). When a connection comes up, the telemetry
already in the outbox becomes the backlog (``Outbox.split_backlog``); from then on every claim
takes business rows first (never throttled, strict order), then telemetry committed since
(live), then backlog rows, at most as many as ``backfill_rate``'s token bucket allows ("spare":
whatever room is left), in ``backfill_order``. Backlog rows go out marked ``historical`` with
their original id, seq and event time, and wait in the network thread's queue behind every
live message (``Hub.send(…, backfill=True)``); ``backfill_cutoff`` drops backlog telemetry
older than it, counted as evicted, when the link comes up and once a minute after.

``hub_rate`` is a second token bucket over every row claimed, whatever its lane: the sum toward
the hub. A claim asks for no more rows than it holds tokens, and the outbox hands out business
rows first, then live, then backlog, so business takes the tokens before the backfill does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from plantsync.agent.backfill import BackfillProgress, BackfillStatus, TokenBucket
from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.base import Claimed, Outbox
from plantsync.config.uplink import UplinkConfig
from plantsync.contracts.envelope import as_historical
from plantsync.drivers.hub import Hub
from plantsync.errors import HubUnavailable, LinkError, PlantsyncError

log = logging.getLogger(__name__)

_DELETE_DELAY = 0.05
"""Longest a confirmed row waits for its batch delete; a lost delete only means a duplicate."""
_EXPIRE_EVERY = 60.0
"""Seconds between two passes of ``backfill_cutoff`` over the backlog."""
_PACE_STEPS = 10
"""A rate-limited backlog is claimed in about this many batches a second."""


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
    historical: set[int] = field(default_factory=set)
    """Of ``sent``, the backlog rows (for the backfill's progress)."""
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
        replay: UplinkConfig | None = None,
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
        self._replay = replay or UplinkConfig()
        rate = self._replay.backfill_rate
        self._bucket = TokenBucket(rate) if isinstance(rate, int) else None
        self.progress = BackfillProgress(rate if isinstance(rate, int) else None)
        hub_rate = self._replay.hub_rate
        self._hub_bucket = TokenBucket(hub_rate) if hub_rate is not None else None
        """Every lane's rows together (``hub_rate``), spent at the claim."""
        self._backlog_left = False
        """The outbox may still hand out backlog rows (it handed out fewer than asked: no)."""
        self._expire_due = 0.0
        self._unsettled = _Flight()
        """The rows of the last session, kept when it could not settle them (disk full): the
        next session settles them first, so they neither stay claimed until a restart nor
        lose the PUBACKs already received."""

    async def serve(self, connection: Hub, stopping: asyncio.Event) -> None:
        """Publish until the link drops (raises a LinkError) or, after ``stopping``, until
        nothing is left to send and every publish is acknowledged."""
        await self._settle(self._unsettled)
        flight = self._unsettled = _Flight()
        await self._split_backlog()
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
            self.progress.tick()
            if self._backlog_left and time.monotonic() >= self._expire_due:
                await self._expire()
            room = self._capacity - len(flight.sent)
            hungry = room >= self._claim_at
            # While the backlog fills the window, new rows (business, live) need no room: they
            # are claimed as they are committed, up to one more capacity, and overtake it.
            urgent = self._backlog_left and room > -self._capacity
            if self._throttled():
                hungry = urgent = False  # no token toward the hub: wait for one (``_pace``)
            if (hungry and not flight.exhausted) or ((hungry or urgent) and self._wakeup.is_set()):
                self._wakeup.clear()
                claimed = await self._claim(max(room, self._claim_at), backfill=hungry)
                flight.exhausted = not claimed
                if claimed:
                    self._send(connection, flight, claimed)
                self._check_finished(flight)
                if claimed:
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
            within = min(delay, self._pace())
            woken = (*waitables, self._wakeup) if hungry or urgent else waitables
            await _first_of(*woken, within=within)
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

    async def _split_backlog(self) -> None:
        """The telemetry waiting now is the backlog of this connection; apply the cutoff."""
        total = await self._outbox.split_backlog(self._replay.backfill_order)
        self._backlog_left = total > 0
        expired = await self._expire() if total else 0
        self.progress.start(total, expired)

    async def _expire(self) -> int:
        """Drop backlog telemetry older than ``backfill_cutoff`` (if set); return how many."""
        self._expire_due = time.monotonic() + _EXPIRE_EVERY
        cutoff = self._replay.cutoff_seconds
        if cutoff is None:
            return 0
        expired = await self._outbox.expire_backlog(time.time() - cutoff)
        self.progress.expired(expired)
        return expired

    async def _claim(self, room: int, *, backfill: bool = True) -> list[Claimed]:
        """Business, live, then as many backlog rows as the backfill rate allows (none
        without ``backfill``)."""
        budget: int | None = None if self._backlog_left and backfill else 0
        if self._bucket is not None and self._backlog_left and backfill:
            budget = self._bucket.available()
        if self._hub_bucket is not None:
            room = min(room, self._hub_bucket.available())
        claimed = await self._outbox.begin(room, backfill=budget)
        if self._hub_bucket is not None:
            self._hub_bucket.take(len(claimed))
        historical = sum(1 for row in claimed if row.historical)
        if self._backlog_left:
            wanted = room - (len(claimed) - historical)
            if historical < (wanted if budget is None else min(wanted, budget)):
                self._backlog_left = False  # the outbox handed out its last backlog row
            if self._bucket is not None:
                self._bucket.take(historical)
        return claimed

    def _throttled(self) -> bool:
        """``hub_rate`` has no token left: nothing may be claimed until ``_pace`` passes."""
        return self._hub_bucket is not None and self._hub_bucket.available() < 1

    def _pace(self) -> float:
        """Seconds until a rate-limited claim may be made again (1 when none waits)."""
        waits = [1.0]
        paced = ((self._bucket, self._backlog_left), (self._hub_bucket, self._throttled()))
        for bucket, due in paced:
            if bucket is not None and due:
                waits.append(max(0.01, bucket.wait(max(1.0, bucket.rate / _PACE_STEPS))))
        return min(waits)

    def _send(self, connection: Hub, flight: _Flight, claimed: Sequence[Claimed]) -> None:
        """Hand claimed rows to the connection, in claim order, as one batch per lane: live
        (business and live telemetry) and backfill (marked historical, queued behind)."""
        if not flight.sent:
            flight.last_progress = time.monotonic()
        flight.sent.update(row.row_id for row in claimed)
        live = [
            (row.row_id, row.record.topic, row.record.payload)
            for row in claimed
            if not row.historical
        ]
        backfill = [
            (row.row_id, row.record.topic, as_historical(row.record.payload))
            for row in claimed
            if row.historical
        ]
        flight.historical.update(key for key, _, _ in backfill)
        if live:
            connection.send(live)
        if backfill:
            connection.send(backfill, backfill=True)
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
        if flight.historical:
            before = len(flight.historical)
            flight.historical.difference_update(confirmed)
            self.progress.sent(before - len(flight.historical))
            self._check_finished(flight)

    def _check_finished(self, flight: _Flight) -> None:
        """The backfill is done once the outbox has no backlog row left to hand out and the
        broker acknowledged every one handed out."""
        if not self._backlog_left and not flight.historical:
            self.progress.finished()

    def _check_stall(self, flight: _Flight) -> None:
        waited = time.monotonic() - flight.last_progress
        if flight.sent and waited > self._stall_timeout:
            raise HubUnavailable(f"connected, but no PUBACK for {waited:.0f} s: reconnecting")

    @property
    def backfill(self) -> BackfillStatus:
        """How far the backlog of the last outage is: for the status page and metrics."""
        return self.progress.status()

    async def _settle(self, flight: _Flight) -> None:
        """Persist what the broker confirmed; return everything else to ready, in order."""
        await self._persist_confirmed(flight)
        unconfirmed = sorted(flight.sent)
        flight.sent.clear()
        flight.historical.clear()
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

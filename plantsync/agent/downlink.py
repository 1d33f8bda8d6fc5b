"""HQ → plant: schedule messages made durable, de-duplicated, decided, and applied once.

    MQTT (manual ack) ─▶ receive() ─ parse ─ bad ─▶ dead letter + "rejected" ack ─┐
                                       │ ok                                      │ committed,
                                       ▼                                         │ then the
                            inbox (dedupe by id) + "accepted" ack ───────────────┴▶ MQTT ack
                                       │
                            run(): one row at a time, in arrival order
                                       ▼
          older revision than applied ───────▶ REJECTED "stale"        ┐
          applied revision, other content ───▶ REJECTED "conflict"     │
          hold / cancel of an unknown order ─▶ REJECTED "unknown-order"│ status, ack to HQ and
          policy: frozen horizon, quantity ──▶ WAITING_APPROVAL        │ last-known-good schedule
          plant system applies it ───────────▶ APPLIED                 │ in one transaction
          plant system refuses it ───────────▶ REJECTED "plant-rejected"┘
          plant system unreachable ──────────▶ RETRY (backoff), "pending" ack once
          alarm.ack no link here takes ──────▶ REJECTED "unknown-source"

An ``alarm.ack`` (topic down/alarm, stream alarm-acks) shares the inbox and its answers, but not
this loop: its row's target is the OPC UA link that applies it (``sourcing/acks.py``), so a
server that is down holds back neither the schedule nor the other servers' acks.

Every message received moves the down sequence's mark, whatever its verdict (a dead letter too,
when its seq can be read): only a seq that never arrived is a gap (``resync/sequence.py``), and
not one that a snapshot's ``as_of_seq`` covers: the snapshot answering a resync closes the gap.

Order is kept plant-wide: while the head row waits for a retry, nothing behind it is applied.
A retry's time is stored as a Unix time (it must survive a restart); one that lies further ahead
than the longest retry delay was scheduled before the wall clock stepped back and is due now, so
a backward step cannot hold the plant's schedule back by the size of the step.
A change that reaches the plant system twice (a crash after the apply, before the settle)
carries the same idempotency key both times, so it takes effect once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from plantsync.agent.business import Acknowledgement, ack_record, resync_record
from plantsync.agent.changes import Decision, plan_changes
from plantsync.agent.logs import correlation
from plantsync.agent.policy import APPROVED, SchedulePolicy
from plantsync.agent.resync import sequence
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.sourcing.acks import AckRule, AlarmAcks
from plantsync.agent.supervisor import Backoff, LinkHealth, LinkState
from plantsync.buffer.inbox import InboxRow, InboxStatus
from plantsync.buffer.store import Store
from plantsync.contracts import DownMessage, Topics
from plantsync.contracts.inbound import (
    MAX_DOWN_MESSAGE_BYTES,
    parse_down_message,
    payload_fingerprint,
    rejection_reason,
)
from plantsync.contracts.orders import (
    AckOutcome,
    ReasonCode,
    ResyncReason,
)
from plantsync.contracts.schedule import AlarmAckMessage
from plantsync.drivers.base import OrderChange, PlantVerdict, ScheduleSink
from plantsync.errors import LinkMisconfigured, MessageRejected, SourceUnavailable

log = logging.getLogger(__name__)

_NextSeq = Callable[[str], int]

OnApplied = Callable[[float, str, list[str]], None]
"""Called once a message settles APPLIED: seconds since HQ's ``event_time``, its correlation id
(the message id when it has none), the orders it applied. For metrics; it must not block."""


@dataclass
class DownlinkCounters:
    received: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    applied: int = 0
    rejected: int = 0
    waiting: int = 0
    retries: int = 0
    conflicts: int = 0
    """Rejected as a revision conflict (also counted in ``rejected``)."""
    seq_gaps: int = 0
    """Gaps in the down sequence: each asked HQ for a snapshot."""
    seq_resets: int = 0
    """Sequence resets by HQ (a higher ``seq_epoch``)."""


class Downlink:
    """Receives down messages into the inbox and applies them through one plant system."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        sequencer: Sequencer,
        *,
        policy: SchedulePolicy,
        outbox_changed: asyncio.Event,
        retry_delays: tuple[float, float] = (1.0, 60.0),
        max_message_bytes: int = MAX_DOWN_MESSAGE_BYTES,
        on_applied: OnApplied | None = None,
        clock: Callable[[], float] = time.time,
        alarm_acks: Mapping[str, AckRule] | None = None,
    ) -> None:
        self._store, self._topics, self._sequencer = store, topics, sequencer
        self._policy, self._outbox_changed = policy, outbox_changed
        self._retry_backoff, self._max_bytes = Backoff(*retry_delays), max_message_bytes
        self._on_applied = on_applied
        self._clock = clock
        """Unix time, for what is stored (arrival, retry times): it must outlive the process."""
        self.wakeup = asyncio.Event()
        self.counters = DownlinkCounters()
        self.alarm_acks = AlarmAcks(
            store, topics, sequencer, outbox_changed, alarm_acks or {}, clock=clock
        )
        """HQ's ``alarm.ack``: received here, applied by the OPC UA links' sessions."""

    # ---- receiving: durable before the MQTT ack -------------------------------------------

    async def receive(self, topic: str, payload: bytes) -> None:
        """Make one inbound message durable (inbox or dead letters). Ack it to MQTT after."""
        try:
            message = parse_down_message(payload, site=self._topics.site, max_bytes=self._max_bytes)
        except MessageRejected as rejected:
            with correlation(rejected.correlation_id or rejected.message_id):
                await self._dead_letter(topic, payload, rejected)
            return
        with correlation(message.correlation_id or message.id):
            await self._receive(topic, payload, message)

    async def _receive(self, topic: str, payload: bytes, message: DownMessage) -> None:
        orders = tuple(plan.order_id for plan in plan_changes(message).orders)
        target = self.alarm_acks.target(message)
        fresh = await self._store.inbox.receive(
            message.id,
            topic,
            payload,
            received_at=self._clock(),
            seq=message.seq,
            order_ids=orders,
            target=target,
        )
        self.counters.received += 1
        log.info("%s %s received (seq %d)%s", message.type, message.id, message.seq, _dup(fresh))
        outcome = AckOutcome.ACCEPTED
        ack = Acknowledgement(message.id, message.type, outcome, message.correlation_id)
        if not fresh:
            self.counters.duplicates += 1
            reason = "already received; each outcome is acknowledged once"
            ack = Acknowledgement(
                message.id,
                message.type,
                outcome,
                message.correlation_id,
                ReasonCode.DUPLICATE,
                reason,
            )
        on_down_stream = not isinstance(message, AlarmAckMessage)  # alarm-acks: its own seq
        seq = (message.seq, message.seq_epoch) if on_down_stream else None
        await self._write([ack], seq=seq, covers=sequence.covered(message))
        self.wakeup.set()
        self.alarm_acks.wake()

    async def request_resync(self, reason: ResyncReason) -> None:
        """Ask HQ for a snapshot of the site's open orders (no session, or a start-up)."""
        last = await self._store.inbox.last_down_seq() or 0
        async with self._sequencer.assigning() as next_seq:
            await self._store.outbox.add(
                [resync_record(self._topics, next_seq, reason, last, None)]
            )
        self._outbox_changed.set()
        log.info("asked HQ for a schedule snapshot (%s, last seq %d)", reason.value, last)

    async def _dead_letter(self, topic: str, payload: bytes, rejected: MessageRejected) -> None:
        reason = rejection_reason(payload, rejected)
        ack = Acknowledgement(
            rejected.message_id or payload_fingerprint(payload),
            rejected.message_type,
            AckOutcome.REJECTED,
            rejected.correlation_id,
            ReasonCode(rejected.reason_code),
            reason,
        )
        async with self._sequencer.assigning() as next_seq:
            await self._store.inbox.dead_letter(
                topic,
                payload,
                rejected.reason_code,
                reason,
                received_at=self._clock(),
                message_id=rejected.message_id,
                acks=[ack_record(self._topics, next_seq, ack)],
            )
        self.counters.dead_letters += 1
        self._outbox_changed.set()
        log.warning("dead letter from %s: %s", topic, rejected)
        if rejected.seq is not None:
            await self._write([], seq=(rejected.seq, rejected.seq_epoch))

    # ---- applying: one row at a time, in arrival order ------------------------------------

    async def run(self, sink: ScheduleSink, health: LinkHealth) -> None:
        """Apply pending rows through ``sink`` until cancelled."""
        while True:
            self.wakeup.clear()
            now = self._clock()
            due = await self._store.inbox.next_retry_at()
            due_by = self._due_by(due, now)
            ready = due is None or due <= due_by
            rows = await self._store.inbox.pending(1, due_by=due_by) if ready else []
            if rows:
                await self._process(rows[0], sink, health)
                continue
            wait = 1.0 if due is None else min(1.0, max(0.0, due - now))
            try:
                async with asyncio.timeout(wait):
                    await self.wakeup.wait()
            except TimeoutError:
                pass

    async def hold(self, error: str, health: LinkHealth) -> None:
        """The plant system cannot be reached: decide what is due without it.

        What needs the plant waits for a retry and HQ hears ``pending`` (plant-unavailable)
        now, not when the link returns; what the plant is not needed for (stale, duplicate,
        waiting for approval) is answered as usual. Called at every failed connect."""
        unreachable = _Unreachable(error)
        for row in await self._store.inbox.pending(1000, due_by=self._clock()):
            await self._process(row, unreachable, health)

    def _due_by(self, due: float | None, now: float) -> float:
        """``now``, or ``due`` when it lies beyond the longest retry delay: no retry is ever
        scheduled that far ahead, so the wall clock stepped back since it was."""
        if due is not None and due - now > self._retry_backoff.maximum:
            return due
        return now

    async def _process(self, row: InboxRow, sink: ScheduleSink, health: LinkHealth) -> None:
        message = parse_down_message(row.payload, site=self._topics.site, max_bytes=1 << 30)
        with correlation(message.correlation_id or message.id):
            await self._decide(row, message, sink, health)

    async def _decide(
        self, row: InboxRow, message: DownMessage, sink: ScheduleSink, health: LinkHealth
    ) -> None:
        plan = plan_changes(message)
        if isinstance(message, AlarmAckMessage):  # no link here takes it (``AlarmAcks.target``)
            await self.alarm_acks.refuse(row, message)
            return
        decision = await plan.decide(
            self._store.inbox, self._policy, datetime.now(UTC), approved=row.reason == APPROVED
        )
        if decision.outcome is AckOutcome.APPLIED and decision.changes:
            try:
                decision = await decision.apply(sink)
            except SourceUnavailable as exc:
                health.transition(LinkState.BACKOFF, exc)
                await self._retry_later(row, message.correlation_id, str(exc))
                return
            except LinkMisconfigured as exc:
                health.transition(LinkState.FAILED, exc)
                decision = decision.failed(ReasonCode.PLANT_REJECTED, str(exc))
            else:
                health.transition(LinkState.UP)
                health.touch()
        await self._settle(row, message.correlation_id, decision)
        if decision.outcome is AckOutcome.APPLIED and self._on_applied is not None:
            latency = self._clock() - message.event_time.timestamp()
            orders = [ref.order_id for ref in decision.order_refs]
            self._on_applied(latency, message.correlation_id or message.id, orders)

    async def _settle(self, row: InboxRow, correlation_id: str | None, decision: Decision) -> None:
        status = _STATUS[decision.outcome]
        ack = Acknowledgement(
            row.message_id,
            decision.message_type,
            decision.outcome,
            correlation_id,
            decision.reason_code,
            decision.reason,
            decision.order_refs,
        )
        async with self._sequencer.assigning() as next_seq:
            await self._store.inbox.settle(
                row.row_id,
                status,
                reason=decision.reason,
                acks=[ack_record(self._topics, next_seq, ack)],
                orders=decision.order_states,
            )
        self._count(decision.outcome)
        self._outbox_changed.set()
        if decision.reason_code is ReasonCode.CONFLICT:
            self.counters.conflicts += 1
            log.warning("%s %s: %s", decision.message_type, row.message_id, decision.reason)
            return
        log.info(
            "%s %s: %s%s",
            decision.message_type,
            row.message_id,
            decision.outcome.value,
            f" ({decision.reason})" if decision.reason else "",
        )

    async def _retry_later(self, row: InboxRow, correlation_id: str | None, error: str) -> None:
        delay = self._retry_backoff.delay(row.attempts)
        acks = []
        async with self._sequencer.assigning() as next_seq:
            if row.status is InboxStatus.RECEIVED or (row.reason == APPROVED and row.attempts <= 1):
                pending = Acknowledgement(
                    row.message_id,
                    None,
                    AckOutcome.PENDING,
                    correlation_id,
                    ReasonCode.PLANT_UNAVAILABLE,
                    error,
                )
                acks.append(ack_record(self._topics, next_seq, pending))
            reason = APPROVED if row.reason == APPROVED else error
            await self._store.inbox.settle(
                row.row_id,
                InboxStatus.RETRY,
                reason=reason,
                acks=acks,
                retry_at=self._clock() + delay,
            )
        self.counters.retries += 1
        self._outbox_changed.set()

    # ---- a planner's decision -------------------------------------------------------------

    async def approve(self, row_id: int) -> bool:
        """Let a waiting change apply; False when no such change waits."""
        row = await self._waiting(row_id)
        if row is None:
            return False
        await self._store.inbox.settle(
            row.row_id, InboxStatus.RETRY, reason=APPROVED, retry_at=self._clock()
        )
        self.wakeup.set()
        self.alarm_acks.wake()
        return True

    async def reject(self, row_id: int, reason: str) -> bool:
        """Refuse a waiting change; HQ gets "rejected" with the planner's reason."""
        row = await self._waiting(row_id)
        if row is None:
            return False
        message = parse_down_message(row.payload, site=self._topics.site, max_bytes=1 << 30)
        if isinstance(message, AlarmAckMessage):
            await self.alarm_acks.refuse(row, message, ReasonCode.APPROVAL_REJECTED, reason)
            return True
        decision = plan_changes(message).refused(ReasonCode.APPROVAL_REJECTED, reason)
        with correlation(message.correlation_id or message.id):
            await self._settle(row, message.correlation_id, decision)
        return True

    async def _waiting(self, row_id: int) -> InboxRow | None:
        rows = await self._store.inbox.waiting_approval()
        return next((row for row in rows if row.row_id == row_id), None)

    # ---- records for the outbox -----------------------------------------------------------

    async def _write(
        self, acks: list[Acknowledgement], *, seq: tuple[int, int] | None, covers: int = 0
    ) -> None:
        """The acks of a received message, and what its (seq, epoch) does to the down
        sequence's mark (a resync request on a gap, unless a snapshot ``covers`` it), in one
        transaction."""
        if seq is None:
            async with self._sequencer.assigning() as next_seq:
                await self._store.outbox.add([ack_record(self._topics, next_seq, a) for a in acks])
            self._outbox_changed.set()
            return
        mark = await self._store.inbox.down_seq_mark()
        seen = sequence.step(mark, *seq, covers=covers)
        async with self._sequencer.assigning() as next_seq:
            records = [ack_record(self._topics, next_seq, ack) for ack in acks]
            if seen.gap is not None:
                last, received = seen.gap
                records.append(
                    resync_record(self._topics, next_seq, ResyncReason.GAP, last, received)
                )
            if seen.mark is not None:
                await self._store.inbox.mark_down_seq(seen.mark, records)
            elif records:
                await self._store.outbox.add(records)
        self.counters.seq_gaps += seen.gap is not None
        self.counters.seq_resets += seen.reset
        self._outbox_changed.set()
        sequence.report(seen)

    def _count(self, outcome: AckOutcome) -> None:
        if outcome is AckOutcome.APPLIED:
            self.counters.applied += 1
        elif outcome is AckOutcome.WAITING_FOR_APPROVAL:
            self.counters.waiting += 1
        else:
            self.counters.rejected += 1


class _Unreachable:
    """A plant system that cannot be reached: every apply is SourceUnavailable."""

    def __init__(self, error: str) -> None:
        self._error = error

    @property
    def name(self) -> str:
        return "unreachable"

    async def __aenter__(self) -> _Unreachable:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def apply(self, change: OrderChange) -> PlantVerdict:
        raise SourceUnavailable(self._error)


def _dup(fresh: bool) -> str:
    return "" if fresh else ": a duplicate"


_STATUS = {
    AckOutcome.APPLIED: InboxStatus.APPLIED,
    AckOutcome.REJECTED: InboxStatus.REJECTED,
    AckOutcome.FAILED: InboxStatus.FAILED,
    AckOutcome.WAITING_FOR_APPROVAL: InboxStatus.WAITING_APPROVAL,
}

"""HQ's alarm acknowledgements (``alarm.ack``), applied once through the OPC UA link that
reported the alarm, in arrival order per link, beside its alarms in the same session.

    Downlink.receive ─▶ inbox row, target = the ack's ``source`` link (``target``); a source
                        that is not a link here, or refuses HQ's acks: no target, and the
                        plant loop rejects it at once ("unknown-source", ``refuse``)
    source session up ─▶ AlarmAcks.run(link, source), one row at a time:
        older than acknowledge_expiry ─────────────▶ REJECTED "expired" (when its turn comes:
                                                     the server back, a planner's approval)
        acknowledge_from_hq = "approval", not yet ──▶ WAITING_APPROVAL (the status page)
        Acknowledge(EventId, Comment): Good ────────▶ APPLIED
                                       Bad… ────────▶ REJECTED "plant-rejected", the status name
        the link drops (SourceUnavailable) ─────────▶ the row stays; the session ends
    every failed connect ─▶ AlarmAcks.hold(link): expiry and approval as above, "pending" once

At most once: before the call the row is marked APPLYING (RETRY, due at once). A row found
APPLYING again was called when the agent stopped or the link dropped, and the answer was lost;
if the server now answers BadConditionBranchAlreadyAcked, that call took effect: APPLIED.
Every settlement and its ``schedule.ack`` to HQ are one transaction, as a schedule's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from plantsync.agent.business import Acknowledgement, ack_record
from plantsync.agent.logs import correlation
from plantsync.agent.policy import APPROVED
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.inbox import InboxRow, InboxStatus
from plantsync.buffer.store import Store
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts import Topics
from plantsync.contracts.inbound import parse_down_message
from plantsync.contracts.orders import AckOutcome, ReasonCode
from plantsync.contracts.schedule import AlarmAckMessage, DownMessage
from plantsync.drivers.base import AlarmAcknowledger
from plantsync.errors import SourceUnavailable, StoreFull

log = logging.getLogger(__name__)

APPLYING = "applying"
"""The reason a row carries while its Acknowledge call is under way (or its answer was lost)."""
ALREADY_ACKED = "BadConditionBranchAlreadyAcked"
HELD_ROWS = 1000
"""Rows one failed connect looks at; the rest wait for the next one."""

Mode = Literal["refuse", "approval", "apply"]


@dataclass(frozen=True)
class AckRule:
    """What a link does with HQ's acks: ``[[opcua]] acknowledge_from_hq`` and its expiry."""

    mode: Mode
    expiry: float
    """Seconds after its arrival an ack not applied yet is rejected as expired."""


def ack_rules(servers: Sequence[OpcUaServerConfig]) -> dict[str, AckRule]:
    """The rule of every configured OPC UA server, by link name (``opcua:<name>``)."""
    return {
        f"opcua:{server.name}": AckRule(
            server.acknowledge_from_hq, server.acknowledge_expiry.total_seconds()
        )
        for server in servers
    }


@dataclass
class AlarmAckCounters:
    """HQ's alarm acknowledgements settled since start, for the metrics and the status page."""

    applied: int = 0
    rejected: int = 0
    """Refused by the server, an unknown source, expired, or by a planner."""
    waiting: int = 0


class AlarmAcks:
    """Applies the ``alarm.ack`` rows of the inbox through their links' sources."""

    def __init__(
        self,
        store: Store,
        topics: Topics,
        sequencer: Sequencer,
        outbox_changed: asyncio.Event,
        rules: Mapping[str, AckRule],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._topics, self._sequencer = store, topics, sequencer
        self._outbox_changed, self._rules, self._clock = outbox_changed, dict(rules), clock
        self._wakeups = {link: asyncio.Event() for link in self._rules}
        self.counters = AlarmAckCounters()

    def target(self, message: DownMessage) -> str | None:
        """The link that applies ``message``: an alarm.ack's source when it is a link here that
        takes HQ's acks; None otherwise (a schedule, or an ack the plant loop refuses)."""
        if not isinstance(message, AlarmAckMessage):
            return None
        rule = self._rules.get(message.payload.source)
        return message.payload.source if rule is not None and rule.mode != "refuse" else None

    async def refuse(
        self,
        row: InboxRow,
        message: AlarmAckMessage,
        code: ReasonCode = ReasonCode.UNKNOWN_SOURCE,
        reason: str | None = None,
    ) -> None:
        """Reject an ack: by default one without a target (its source is no link here, or
        refuses HQ's acks); a planner's refusal gives its code and reason."""
        reason = reason or self._refusal(message)
        await self._settle(row, message, AckOutcome.REJECTED, code, reason)

    def _refusal(self, message: AlarmAckMessage) -> str:
        source = message.payload.source
        if source in self._rules:
            return f'{source} takes no acknowledgements from HQ (acknowledge_from_hq = "refuse")'
        known = ", ".join(sorted(self._rules)) or "none"
        return f"no OPC UA server {source!r} at this site (its links: {known})"

    def wake(self) -> None:
        """Something changed in the inbox (an ack arrived, a planner decided): look again."""
        for wakeup in self._wakeups.values():
            wakeup.set()

    async def run(self, link: str, source: AlarmAcknowledger) -> None:
        """Apply ``link``'s acks through ``source`` until cancelled; a lost link raises
        SourceUnavailable and the row it was applying stays for the next session."""
        wakeup = self._wakeups.setdefault(link, asyncio.Event())
        while True:
            wakeup.clear()
            rows = await self._store.inbox.pending(1, target=link)
            if rows:
                try:
                    await self._process(link, rows[0], source)
                except StoreFull as exc:  # the row stays; the next session tries again
                    raise SourceUnavailable(f"{link}: the outbox refused an answer: {exc}") from exc
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await wakeup.wait()

    async def hold(self, link: str, error: str) -> None:
        """``link`` cannot be reached: what is due without it (expiry, approval, "pending")."""
        if link not in self._rules:
            return
        for row in await self._store.inbox.pending(HELD_ROWS, target=link):
            try:
                await self._process(link, row, None, error)
            except StoreFull:  # the link's own error is what the supervisor must see
                log.warning("%s: the outbox is full; HQ's acks wait unanswered", link)
                return

    async def _process(
        self, link: str, row: InboxRow, source: AlarmAcknowledger | None, error: str = ""
    ) -> None:
        message = parse_down_message(row.payload, site=self._topics.site, max_bytes=1 << 30)
        assert isinstance(message, AlarmAckMessage), "only alarm.ack rows have a link target"
        with correlation(message.correlation_id or message.id):
            await self._decide(self._rules[link], row, message, source, error)

    async def _decide(
        self,
        rule: AckRule,
        row: InboxRow,
        message: AlarmAckMessage,
        source: AlarmAcknowledger | None,
        error: str,
    ) -> None:
        ack = message.payload
        if self._clock() - row.received_at > rule.expiry:
            reason = f"not applied within {rule.expiry:g} s of its arrival (acknowledge_expiry)"
            await self._settle(row, message, AckOutcome.REJECTED, ReasonCode.EXPIRED, reason)
        elif rule.mode == "approval" and row.reason not in (APPROVED, APPLYING):
            reason = f"HQ ({ack.user}) acknowledges {ack.condition_id} on {ack.source}"
            await self._settle(row, message, AckOutcome.WAITING_FOR_APPROVAL, None, reason)
        elif source is None:
            if row.status is InboxStatus.RECEIVED:
                code = ReasonCode.PLANT_UNAVAILABLE
                await self._settle(row, message, AckOutcome.PENDING, code, error)
        else:
            await self._apply(row, message, source)

    async def _apply(
        self, row: InboxRow, message: AlarmAckMessage, source: AlarmAcknowledger
    ) -> None:
        if row.reason != APPLYING:
            await self._store.inbox.settle(
                row.row_id, InboxStatus.RETRY, reason=APPLYING, retry_at=self._clock()
            )
        ack = message.payload
        status = await source.acknowledge(
            ack.condition_id, bytes.fromhex(ack.event_id), ack.comment_text()
        )
        if status == "Good":
            await self._settle(row, message, AckOutcome.APPLIED, None, None)
        elif status == ALREADY_ACKED and row.reason == APPLYING:
            reason = f"{status}: the call whose answer was lost (agent or link down) took effect"
            await self._settle(row, message, AckOutcome.APPLIED, None, reason)
        else:
            await self._settle(row, message, AckOutcome.REJECTED, ReasonCode.PLANT_REJECTED, status)

    async def _settle(
        self,
        row: InboxRow,
        message: AlarmAckMessage,
        outcome: AckOutcome,
        code: ReasonCode | None,
        reason: str | None,
    ) -> None:
        pending = outcome is AckOutcome.PENDING
        ack = Acknowledgement(
            row.message_id, message.type, outcome, message.correlation_id, code, reason
        )
        async with self._sequencer.assigning() as next_seq:
            await self._store.inbox.settle(
                row.row_id,
                _STATUS[outcome],
                reason=reason,
                acks=[ack_record(self._topics, next_seq, ack)],
                retry_at=self._clock() if pending else None,
            )
        self._outbox_changed.set()
        if outcome is AckOutcome.APPLIED:
            self.counters.applied += 1
        elif outcome is AckOutcome.WAITING_FOR_APPROVAL:
            self.counters.waiting += 1
        elif not pending:
            self.counters.rejected += 1
        suffix = f" ({reason})" if reason else ""
        log.info(
            "alarm.ack %s for %s: %s%s",
            row.message_id,
            message.payload.source,
            outcome.value,
            suffix,
        )


_STATUS = {
    AckOutcome.APPLIED: InboxStatus.APPLIED,
    AckOutcome.REJECTED: InboxStatus.REJECTED,
    AckOutcome.WAITING_FOR_APPROVAL: InboxStatus.WAITING_APPROVAL,
    AckOutcome.PENDING: InboxStatus.RETRY,
}

"""What the web surface needs from the running agent: the one seam between ``plantsync.web``
and the core, so that no web module imports the ``Agent`` (``plantsync.agent.service``).

    composition root ──▶ create_app(view: AgentView) ──▶ API routes, status page, /metrics
                                   │
                                   ▼
          reads: config, health, uptime, the store, counters, latest readings
          commands: receive / approve / reject (downlink), confirmations and order status
                    (business writer), correlation_of

The ``Agent`` satisfies ``AgentView`` structurally: nothing here names it, and every member
is a read-only property, so the agent's plain attributes (``store: Store | None``, …) fit.
The store, the downlink and the business writer are None until the store is open (the API
answers 503 meanwhile). Each part the web only reads or commands is named by what the web
asks of it (``PipelineView``, ``DownlinkCommands``, …), not by its class: the web cannot
submit readings or settle inbox rows, because nothing here says it may.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from plantsync.agent.backfill import BackfillStatus
    from plantsync.agent.business import BusinessCounters, ClientKey, Written
    from plantsync.agent.downlink import DownlinkCounters
    from plantsync.agent.pipeline import PipelineCounters
    from plantsync.agent.sourcing.acks import AlarmAckCounters
    from plantsync.agent.supervisor import LinkHealth
    from plantsync.agent.uplink import UplinkCounters
    from plantsync.buffer.store import Store
    from plantsync.config.model import AgentConfig
    from plantsync.contracts import TagValue
    from plantsync.contracts.orders import OrderStatus, ProductionConfirmation


class PipelineView(Protocol):
    """The telemetry pipeline, as the status page and the metrics read it."""

    @property
    def counters(self) -> PipelineCounters: ...

    def latest(self) -> dict[str, dict[str, TagValue]]:
        """The latest value of each tag per machine since start (a copy)."""
        ...


class UplinkView(Protocol):
    """The uplink's counters (published, acknowledged, requeued), for the metrics."""

    @property
    def counters(self) -> UplinkCounters: ...

    @property
    def backfill(self) -> BackfillStatus:
        """The backlog of the last outage: size, sent, drain rate, ETA."""
        ...


class AlarmAcksView(Protocol):
    """HQ's alarm acknowledgements (``alarm.ack``) settled since start, for the metrics."""

    @property
    def counters(self) -> AlarmAckCounters: ...


class DownlinkCommands(Protocol):
    """What planners and plant IT do to down messages through the web."""

    @property
    def counters(self) -> DownlinkCounters: ...

    @property
    def alarm_acks(self) -> AlarmAcksView: ...

    async def receive(self, topic: str, payload: bytes) -> None:
        """Make one down message durable (inbox or dead letters), as if the hub sent it."""
        ...

    async def approve(self, row_id: int) -> bool:
        """Let a waiting change apply; False when no such change waits."""
        ...

    async def reject(self, row_id: int, reason: str) -> bool:
        """Refuse a waiting change with a planner's reason; False when none waits."""
        ...


class PlantMessages(Protocol):
    """Commits what the plant reports for HQ, once per key; each returns the message id once
    durable (``Written``), or the kept answer of a retry; ``KeyConflict`` for a key reused
    with other content."""

    @property
    def counters(self) -> BusinessCounters: ...

    async def confirmation(
        self,
        confirmation: ProductionConfirmation,
        *,
        source: str,
        correlation_id: str | None = None,
        key: ClientKey | None = None,
    ) -> Written: ...

    async def order_status(
        self,
        status: OrderStatus,
        *,
        source: str,
        correlation_id: str | None = None,
        key: ClientKey | None = None,
    ) -> Written: ...


class AgentView(Protocol):
    """The running agent as the web surface sees it."""

    @property
    def config(self) -> AgentConfig: ...

    @property
    def config_hash(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...

    @property
    def uptime_seconds(self) -> float:
        """Seconds since start on the monotonic clock."""
        ...

    @property
    def health(self) -> Mapping[str, LinkHealth]:
        """Every link by name: ``hub``, ``plant``, ``opcua:<server>``."""
        ...

    @property
    def store(self) -> Store | None: ...

    @property
    def downlink(self) -> DownlinkCommands | None: ...

    @property
    def business(self) -> PlantMessages | None: ...

    @property
    def pipeline(self) -> PipelineView | None: ...

    @property
    def uplink(self) -> UplinkView | None: ...

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule that last applied ``order_id``, if known; a
        confirmation of that order carries it, so HQ ties the two together."""
        ...

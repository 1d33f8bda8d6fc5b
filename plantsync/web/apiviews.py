"""What the local API answers: its response models, and the views that build them.

Times are RFC 3339 in UTC, ages are seconds. Durations of the agent's own state (uptime, time
in a link state, time since a link's last exchange) come from the monotonic clock, so a step of
the wall clock does not change them; ages of stored rows compare Unix times (they survive
restarts) and are clamped at zero. Orders are the canonical ``ProductionOrder`` JSON,
exactly as HQ's contract defines it, so a plant application reads the schedule with the same
schema it would use on the hub. Free text from links and peers passes through ``scrub``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from plantsync import __version__
from plantsync.agent.changes import plan_changes
from plantsync.agent.supervisor import LinkHealth, LinkState
from plantsync.buffer.base import OutboxStats
from plantsync.buffer.database import StoreHealth
from plantsync.buffer.inbox import DeadLetter, Inbox, InboxRow, InboxStats, OrderState
from plantsync.buffer.quarantine import quarantined_files
from plantsync.contracts.inbound import parse_down_message
from plantsync.contracts.schedule import ProductionOrder
from plantsync.errors import MessageRejected
from plantsync.web.certificates import CertificateView, certificate_views
from plantsync.web.progress import BackfillView, backfill_view
from plantsync.web.view import AgentView, DownlinkCommands

Scrub = Callable[[str | None], str | None]

PAYLOAD_PREVIEW_CHARS = 4000
"""How much of a dead letter's bytes the API shows, as text."""


class ScheduledOrder(BaseModel):
    """One order of the last-known-good schedule, as last applied at the plant."""

    order_id: str
    revision: int
    work_center: str
    status: str
    planned_start: datetime | None
    updated_at: datetime
    correlation_id: str | None = None
    """Of the schedule message that last applied the order (its acks and the order's
    confirmations carry the same); None for orders applied before the agent kept it."""
    applied_by: str | None = None
    """The id of that schedule message."""
    order: ProductionOrder


class WorkCenterSchedule(BaseModel):
    work_center: str
    orders: list[ScheduledOrder]


class Schedule(BaseModel):
    """The last-known-good schedule; ``hub_state`` says whether HQ can be reached right now."""

    as_of: datetime
    hub_state: LinkState
    work_centers: list[WorkCenterSchedule]


class ProposedOrder(BaseModel):
    """One order a waiting change concerns: as applied now, and as the change would make it."""

    order_id: str
    revision: int
    current: ProductionOrder | None
    proposed: ProductionOrder | None


class WaitingChange(BaseModel):
    """A change from HQ held for a planner's approval."""

    row_id: int
    message_id: str
    type: str | None
    correlation_id: str | None
    order_ids: list[str]
    received_at: datetime
    reason: str | None
    orders: list[ProposedOrder]


class DeadLetterView(BaseModel):
    id: int
    message_id: str | None
    topic: str
    reason_code: str
    reason: str | None
    received_at: datetime
    dead_at: datetime
    size_bytes: int
    payload_preview: str
    """The first bytes as UTF-8 text, undecodable bytes replaced."""
    kept_bytes: int | None = None
    """How much of the message is kept (at most ``store.dead_letter_max_size``)."""
    sha256: str | None = None
    """Hex sha256 of the whole message."""


class ServerView(BaseModel):
    """An OPC UA server as the source link found it on connecting."""

    endpoint: str
    security_mode: str
    security_policy: str | None = None
    namespaces: list[str] = []
    """Namespace URIs; a node id's ``ns=`` is the position here."""
    limits: dict[str, int] = {}
    """The operation limits the server declares (0: none declared)."""


class LinkView(BaseModel):
    state: LinkState
    since: datetime
    last_error: str | None
    last_activity: datetime | None
    connects: int
    failures: int
    seconds_in_state: float
    seconds_since_activity: float | None
    """Monotonic: what "connected, but nothing flows" is judged on."""
    counters: dict[str, int] = {}
    peer: str | None = None
    """What the link reached last: for the hub, its node and the MQTT version it accepted."""
    server: ServerView | None = None
    """An OPC UA source's server: endpoint, security mode, namespace URIs, limits."""
    peer_certificate_not_after: datetime | None = None
    """When the certificate the peer presented at connect expires (the hub broker's, TLS)."""
    """What the link's driver counted this session: ``dropped``, ``overflows`` (values lost),
    ``more_notifications``, ``publish_requests`` (an OPC UA server's cap at work)."""


class LaneView(BaseModel):
    depth: int
    oldest_age_seconds: float | None


class OutboxView(BaseModel):
    lanes: dict[str, LaneView]
    depth: int
    size_bytes: int
    max_size_bytes: int
    evicted_total: int
    telemetry_dropped: int
    """Telemetry shed since start: evicted or refused at the cap, or refused on a full disk."""
    dead_letter_bytes: int = 0
    """Of ``size_bytes`` (all that counts toward the cap), what dead letters hold."""
    idempotency_key_bytes: int = 0
    """Of ``size_bytes``, what idempotency keys hold."""
    dead_letter_cap_bytes: int = 0
    """The most dead letters may hold; beyond, the oldest are evicted."""
    dead_letters_evicted: int = 0


class QuarantineView(BaseModel):
    original: str
    moved_to: str
    reason: str
    at: datetime


class StoreView(BaseModel):
    """The store file itself. ``alarms`` hold until the cause is gone: a full disk until a
    write succeeds again, a quarantined file until plant IT deletes it."""

    path: str
    disk_full: bool
    disk_full_since: datetime | None
    writes_refused: int
    """Write transactions refused for a full disk since start; nothing of them was stored."""
    quarantine: QuarantineView | None
    """The corrupt file this start moved aside, if any."""
    quarantined_files: list[str]
    alarms: list[str]


class InboxView(BaseModel):
    counts: dict[str, int]
    pending: int
    oldest_pending_age_seconds: float | None


class Status(BaseModel):
    site: str
    version: str
    config_hash: str
    started_at: datetime
    uptime_seconds: float
    links: dict[str, LinkView]
    outbox: OutboxView
    inbox: InboxView
    store: StoreView
    dead_letters: int
    downlink: dict[str, int]
    """The downlink's counters since start: received, duplicates, applied, rejected, …"""
    plant_input: dict[str, int] = {}
    """What the plant sent up since start: ``unplanned_confirmations``, ``unplanned_statuses``
    (orders not in the last-known-good schedule), ``replayed`` (retries answered with the
    first answer), ``conflicts`` (a key reused for other content, refused)."""
    certificates: list[CertificateView] = []
    """Every certificate the config puts in use, with its expiry."""
    backfill: BackfillView | None = None
    """The backlog of the last outage, its drain rate and ETA; None before the uplink runs."""


class Accepted(BaseModel):
    """Committed to the outbox: HQ will receive it, with this id."""

    message_id: str


class Decided(BaseModel):
    row_id: int
    decision: Literal["approved", "rejected"]


class RetryOutcome(BaseModel):
    """``received``: in the inbox now; ``dead-letter``: refused again, for ``reason``."""

    dead_letter_id: int
    outcome: Literal["received", "dead-letter"]
    reason: str | None


def order_view(order: OrderState) -> ScheduledOrder:
    return ScheduledOrder(
        order_id=order.order_id,
        revision=order.revision,
        work_center=order.work_center,
        status=order.status,
        planned_start=datetime.fromisoformat(order.planned_start) if order.planned_start else None,
        updated_at=_utc(order.updated_at),
        correlation_id=order.correlation_id,
        applied_by=order.message_id,
        order=ProductionOrder.model_validate_json(order.order_json),
    )


def schedule_view(orders: list[OrderState], hub: LinkHealth) -> Schedule:
    """Grouped by work center in the store's order (planned start, then order id)."""
    groups: dict[str, list[ScheduledOrder]] = {}
    for order in orders:
        groups.setdefault(order.work_center, []).append(order_view(order))
    return Schedule(
        as_of=_utc(time.time()),
        hub_state=hub.state,
        work_centers=[
            WorkCenterSchedule(work_center=name, orders=items)
            for name, items in sorted(groups.items())
        ],
    )


async def waiting_view(row: InboxRow, site: str, inbox: Inbox, scrub: Scrub) -> WaitingChange:
    """The row with the orders it would change, decoded from its payload."""
    orders: list[ProposedOrder] = []
    try:
        message = parse_down_message(row.payload, site=site, max_bytes=1 << 30)
    except MessageRejected:  # accepted when it arrived; a later version may read it otherwise
        message_type, correlation_id = None, None
    else:
        message_type, correlation_id = message.type, message.correlation_id
        for item in plan_changes(message).orders:
            known = await inbox.order(item.order_id)
            current = ProductionOrder.model_validate_json(known.order_json) if known else None
            orders.append(
                ProposedOrder(
                    order_id=item.order_id,
                    revision=item.revision,
                    current=current,
                    proposed=item.proposed(current),
                )
            )
    return WaitingChange(
        row_id=row.row_id,
        message_id=row.message_id,
        type=message_type,
        correlation_id=correlation_id,
        order_ids=list(row.order_ids),
        received_at=_utc(row.received_at),
        reason=scrub(row.reason),
        orders=orders,
    )


def dead_letter_view(letter: DeadLetter, scrub: Scrub) -> DeadLetterView:
    preview = letter.payload[:PAYLOAD_PREVIEW_CHARS].decode("utf-8", errors="replace")
    return DeadLetterView(
        id=letter.id,
        message_id=letter.message_id,
        topic=letter.topic,
        reason_code=letter.reason_code,
        reason=scrub(letter.reason),
        received_at=_utc(letter.received_at),
        dead_at=_utc(letter.dead_at),
        size_bytes=letter.size if letter.size is not None else len(letter.payload),
        payload_preview=scrub(preview) or "",
        kept_bytes=len(letter.payload),
        sha256=letter.sha256,
    )


def downlink_counts(downlink: DownlinkCommands) -> dict[str, int]:
    """The downlink's counters and HQ's alarm acks (``alarm_acks_applied``, …) in one map."""
    acks = asdict(downlink.alarm_acks.counters)
    return asdict(downlink.counters) | {f"alarm_acks_{key}": count for key, count in acks.items()}


def status_view(
    view: AgentView,
    outbox: OutboxStats,
    inbox: InboxStats,
    downlink: dict[str, int],
    scrub: Scrub,
) -> Status:
    now = time.time()
    return Status(
        site=view.config.site.id,
        version=__version__,
        config_hash=view.config_hash,
        started_at=view.started_at,
        uptime_seconds=round(view.uptime_seconds, 3),
        links={name: _link_view(health, scrub) for name, health in view.health.items()},
        outbox=OutboxView(
            lanes={
                lane.name.lower(): LaneView(
                    depth=stats.depth, oldest_age_seconds=_age(stats.oldest_created_at, now)
                )
                for lane, stats in outbox.lanes.items()
            },
            depth=outbox.depth,
            size_bytes=outbox.size_bytes,
            max_size_bytes=outbox.max_size_bytes,
            evicted_total=outbox.evicted_total,
            dead_letter_bytes=outbox.dead_letter_bytes,
            idempotency_key_bytes=outbox.key_bytes,
            dead_letter_cap_bytes=outbox.dead_letter_cap,
            dead_letters_evicted=outbox.dead_letters_evicted,
            telemetry_dropped=view.pipeline.counters.dropped if view.pipeline else 0,
        ),
        inbox=InboxView(
            counts={status.name.lower(): count for status, count in inbox.counts.items()},
            pending=inbox.pending,
            oldest_pending_age_seconds=inbox.oldest_pending_age,
        ),
        store=store_view(view.store.health) if view.store is not None else _no_store(view),
        dead_letters=inbox.dead_letters,
        downlink=downlink,
        plant_input=asdict(view.business.counters) if view.business is not None else {},
        certificates=certificate_views(view.config, view.health),
        backfill=backfill_view(view.uplink.backfill, outbox, now) if view.uplink else None,
    )


def store_view(health: StoreHealth) -> StoreView:
    """The store file's state and its alarms, read from the disk each time (files can go)."""
    quarantine = health.quarantine
    files = quarantined_files(health.path)
    return StoreView(
        path=str(health.path),
        disk_full=health.disk_full,
        disk_full_since=_utc(health.disk_full_since) if health.disk_full_since else None,
        writes_refused=health.writes_refused,
        quarantine=QuarantineView(
            original=str(quarantine.original),
            moved_to=str(quarantine.moved_to),
            reason=quarantine.reason,
            at=quarantine.at,
        )
        if quarantine is not None
        else None,
        quarantined_files=[str(file) for file in files],
        alarms=_store_alarms(health, files),
    )


def _store_alarms(health: StoreHealth, files: list[Path]) -> list[str]:
    alarms = []
    if health.disk_full_since is not None:
        since = _utc(health.disk_full_since).strftime("%Y-%m-%d %H:%M:%S")
        alarms.append(
            f"The disk under the store is full since {since} UTC: telemetry is shed, business"
            " messages are refused, inbound schedules wait unacknowledged at the broker. Free"
            " space: the agent resumes by itself."
        )
    quarantine = health.quarantine
    for file in files:
        if quarantine is not None and file == quarantine.moved_to:
            alarms.append(
                f"The store {quarantine.original} was corrupt ({quarantine.reason}); it was moved"
                f" to {file} and the agent started on a fresh store. Inspect the file, then"
                " delete it to clear this alarm."
            )
        else:
            alarms.append(
                f"A corrupt store was moved aside to {file} at an earlier start. Inspect the"
                " file, then delete it to clear this alarm."
            )
    return alarms


def _no_store(view: AgentView) -> StoreView:
    return store_view(StoreHealth(view.config.store.path))


def _link_view(health: LinkHealth, scrub: Scrub) -> LinkView:
    activity = health.seconds_since_activity()
    return LinkView(
        state=health.state,
        since=_utc(health.since),
        last_error=scrub(health.last_error),
        last_activity=_utc(health.last_activity) if health.last_activity is not None else None,
        connects=health.connects,
        failures=health.failures,
        seconds_in_state=round(health.seconds_in_state(), 3),
        seconds_since_activity=round(activity, 3) if activity is not None else None,
        counters=dict(health.counters),
        peer=health.peer,
        server=ServerView.model_validate(health.server) if health.server else None,
        peer_certificate_not_after=(
            health.peer_certificate.not_after if health.peer_certificate else None
        ),
    )


def _age(created_at: float | None, now: float) -> float | None:
    return None if created_at is None else round(max(0.0, now - created_at), 3)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)

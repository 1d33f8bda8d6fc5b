"""The small roles a driver plays; the agent wraps each in a running object that owns
reconnection, counters, health and logging, so drivers stay small.

    Source         async context manager; ``readings()`` yields batches of Reading until the
                   link drops, when it raises SourceUnavailable (the supervisor reconnects)
    ScheduleSink   async context manager; ``apply(change)`` delivers one schedule change
    Counted        optional capability of any link: ``counters()`` (values lost, limits hit)
    AlarmSource    optional capability of a Source: ``alarms()`` yields the Alarms & Conditions
                   events of its configured notifiers, until the link drops
    AlarmAcknowledger  optional capability of a Source: ``acknowledge(...)`` calls a condition's
                   Acknowledge method (OPC UA Part 9) and returns the server's status name
    HistorySource  optional capability of a Source: ``history(gaps)`` reads what gaps missed
    TagsDescribed  optional capability of a Source: ``tag_metadata()`` (units, EURange, type)
    Described      optional capability of any link: ``description()`` (what it learnt about its
                   peer on connecting: an OPC UA server's namespaces and limits)
    PlantEvents    optional capability of a ScheduleSink: ``events()`` yields the order status
                   and production confirmations the plant system reports, until the link drops

Drivers contain no reconnect loops and never import ``plantsync.agent``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from plantsync.contracts.alarms import Alarm
from plantsync.contracts.machine import Quality, TagJson, TagMetadata
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation


@dataclass(frozen=True, slots=True)
class Reading:
    """One tag value as a source reported it."""

    machine_id: str
    tag: str
    value: TagJson
    quality: Quality
    status_code: int
    source_time: datetime | None
    historical: bool = False
    """Read from the server's history to fill a gap, not received live."""
    overflow: bool = False
    """The server discarded values of this tag before this one (its queue overflowed)."""


@dataclass(frozen=True, slots=True)
class HistoryGap:
    """Values of one tag that were not received live and cannot be read from history."""

    machine_id: str
    tag: str
    start: datetime
    end: datetime
    reason: str


class Connection(Protocol):
    """Entered to connect, left to disconnect: one object is one session with a peer."""

    async def __aenter__(self) -> Self:
        """Connect; raise a LinkError (retry) or LinkMisconfigured (the config must change)."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Disconnect, within a bounded time, whatever state the session is in."""
        ...


class Link(Connection, Protocol):
    """What every plant-side link is: a named connection."""

    @property
    def name(self) -> str:
        """The link's name as configured; used in health, logs and the ``source`` field."""
        ...


class Source(Link, Protocol):
    """A plant-side link that produces readings (OPC UA, MES polling)."""

    def readings(self) -> AsyncIterator[list[Reading]]:
        """Batches of readings as notifications arrive; the first batch is the initial values.

        Raises SourceUnavailable when the link drops or goes silent for longer than its
        stall timeout.
        """
        ...


@dataclass(frozen=True, slots=True)
class OrderChange:
    """One schedule change for one order, as a plant system receives it."""

    idempotency_key: str
    """``<order id>@<revision>``: stable across retries, restarts and resyncs (``changes.py``)."""
    change_type: str
    """The down message type, e.g. ``schedule.release`` or ``order.cancel``."""
    order_id: str
    revision: int
    body: dict[str, object]
    """The change as JSON-ready data (the order, or the hold / substitution / cancellation)."""


@dataclass(frozen=True, slots=True)
class PlantVerdict:
    """What the plant system said: applied, or refused with its reason."""

    applied: bool
    reason: str | None = None


class ScheduleSink(Link, Protocol):
    """A plant system that schedule changes are delivered to (MES REST, OPC UA Job Control)."""

    async def apply(self, change: OrderChange) -> PlantVerdict:
        """Deliver one change. The same ``idempotency_key`` twice must take effect once.

        Returns the plant's verdict; raises SourceUnavailable when the plant system cannot be
        reached or answers with a server error (the downlink retries with backoff).
        """
        ...


@runtime_checkable
class Counted(Protocol):
    """Optional capability of a link: what it counted that plant IT must see (data lost on the
    way, a server's limits at work). Check with ``isinstance(link, Counted)``.

    Names in use: ``dropped`` (values the agent's bounded queue discarded because it fell
    behind), ``overflows`` (values the server flagged as lost from its own queue: the Overflow
    bit of a StatusCode), ``more_notifications`` (messages in which the server held more than
    it could send), ``publish_requests`` (OPC UA Publish requests in flight).
    """

    def counters(self) -> Mapping[str, int]:
        """The counts since the link connected."""
        ...


@runtime_checkable
class AlarmSource(Protocol):
    """Optional capability of a Source whose server reports alarms (OPC UA A&C).

    Check with ``isinstance(source, AlarmSource)``.
    """

    def alarms(self) -> AsyncIterator[Alarm]:
        """Condition events as the server reports them; after connecting, the conditions the
        server retains again (``refresh``). Never ends when no notifier is configured; raises
        SourceUnavailable when the link drops or goes silent."""
        ...


@runtime_checkable
class AlarmAcknowledger(Protocol):
    """Optional capability of a Source whose alarms can be acknowledged (OPC UA A&C).

    Check with ``isinstance(source, AlarmAcknowledger)``.
    """

    async def acknowledge(self, condition_id: str, event_id: bytes, comment: str) -> str:
        """Acknowledge the event ``event_id`` of the condition ``condition_id`` (a node id
        string). Returns the server's status name: ``Good`` when it took effect, otherwise why
        not (``BadEventIdUnknown``, ``BadConditionBranchAlreadyAcked``, ``BadNodeIdUnknown``
        …). Raises SourceUnavailable when the link is down: whether it took effect is unknown.
        """
        ...


@runtime_checkable
class HistorySource(Protocol):
    """Optional capability of a Source whose server keeps history (OPC UA HistoryRead).

    Check with ``isinstance(source, HistorySource)``.
    """

    def history(self, gaps: Sequence[HistoryGap]) -> AsyncIterator[list[Reading] | HistoryGap]:
        """The values of each gap's tag strictly between its ``start`` and ``end``, as
        historical readings in batches (oldest first per tag); a HistoryGap (with the reason)
        for what the server cannot give. Ends when every gap is done; raises
        SourceUnavailable when the link drops."""
        ...


@runtime_checkable
class TagsDescribed(Protocol):
    """Optional capability of a Source: what its tags' numbers mean (units, range, type),
    read once per connection. Check with ``isinstance(source, TagsDescribed)``."""

    def tag_metadata(self) -> Mapping[tuple[str, str], TagMetadata]:
        """(machine id, tag) -> metadata, for the tags the server describes; empty before
        the source connected."""
        ...


@runtime_checkable
class Described(Protocol):
    """Optional capability of a link: what it learnt about its peer on connecting, for the
    status page (JSON-ready). Check with ``isinstance(link, Described)``.

    An OPC UA source gives ``endpoint``, ``security_mode``, ``security_policy``,
    ``namespaces`` (the server's namespace URIs, index = position) and ``limits`` (the
    operation limits it declares, 0 where none; ``drivers.common.uaserver.ServerLimits``).
    """

    def description(self) -> Mapping[str, object]:
        """What the link learnt about its peer; empty before it connected."""
        ...


@runtime_checkable
class PlantEvents(Protocol):
    """Optional capability of a ScheduleSink whose plant system reports back (Job Control).

    Check with ``isinstance(sink, PlantEvents)``.
    """

    def events(self) -> AsyncIterator[OrderStatus | ProductionConfirmation]:
        """Job order state changes and production confirmations, as the plant reports them.

        The first events after connecting describe every order the plant holds. Raises
        SourceUnavailable when the link drops or goes silent.
        """
        ...

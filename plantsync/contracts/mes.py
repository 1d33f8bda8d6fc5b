"""What the MES reports, read by polling its REST endpoints: ISA-95 work performance up to HQ.

    work.status            <prefix>/<site>/up/mes/workorder/<work_order_id>/status
                           stream "workorder/<work_order_id>"           business (never evicted)
    equipment.downtime     <prefix>/<site>/up/mes/equipment/<equipment_id>/downtime
                           stream "equipment/<equipment_id>/downtime"   business
    equipment.capability   <prefix>/<site>/up/mes/equipment/<equipment_id>/capability
                           stream "equipment/<equipment_id>/capability" business
    production.throughput  <prefix>/<site>/up/mes/equipment/<equipment_id>/throughput
                           stream "equipment/<equipment_id>/throughput" telemetry
    production.yield       <prefix>/<site>/up/mes/equipment/<equipment_id>/yield
                           stream "equipment/<equipment_id>/yield"      telemetry

Names follow ISA-95 Part 2/4: a work order's execution is the MES's view of a job order
(``JobOrderState`` as in OPC 10031-4), equipment is a work center or work unit, and
"capability" is ISA-95's word for what the APS calls capacity: the hours a work center is
available in a shift, less planned maintenance. Downtime, execution status and capability are
business messages: the plant's record of what happened, never evicted. Throughput and yield are
telemetry: counts per interval, the next interval supersedes them.

``MES_MESSAGES`` is the one table the poller, the AsyncAPI document and the topic builder read:
each type's payload model, envelope model, stream, topic, event time and lane.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from plantsync.contracts.envelope import SITE_PATTERN, Contract, Envelope
from plantsync.contracts.orders import JobOrderState
from plantsync.contracts.schedule import Identifier, OrderId
from plantsync.contracts.topics import Topics

WORK_STATUS_TYPE: Literal["work.status"] = "work.status"
EQUIPMENT_DOWNTIME_TYPE: Literal["equipment.downtime"] = "equipment.downtime"
EQUIPMENT_CAPABILITY_TYPE: Literal["equipment.capability"] = "equipment.capability"
PRODUCTION_THROUGHPUT_TYPE: Literal["production.throughput"] = "production.throughput"
PRODUCTION_YIELD_TYPE: Literal["production.yield"] = "production.yield"
MES_VERSION: Literal[1] = 1


class DowntimeCategory(StrEnum):
    """ISA-95 / OEE: planned downtime (maintenance, changeover) does not count against
    availability; unplanned (breakdown, starved, blocked) does."""

    PLANNED = "planned"
    UNPLANNED = "unplanned"


def _ordered(start: datetime, end: datetime | None, what: str) -> None:
    if end is not None and end < start:
        raise ValueError(f"{what}: the end must not be earlier than the start")


class WorkStatus(Contract):
    """Payload of ``work.status``: a work order's execution at the MES changed (ISA-95 work
    performance: job order state and the quantities so far)."""

    work_order_id: OrderId
    operation_id: Identifier | None = Field(default=None, description="segment / operation")
    equipment_id: Identifier | None = None
    state: JobOrderState
    good_count: int | None = Field(default=None, ge=0, description="good units so far")
    scrap_count: int | None = Field(default=None, ge=0, description="scrapped units so far")
    changed_at: AwareDatetime = Field(description="when the MES recorded the change")


class EquipmentDowntime(Contract):
    """Payload of ``equipment.downtime``: one downtime event from the MES's downtime log.

    Sent when the MES records it and again when it changes (ends, or is re-coded); the
    ``downtime_id`` ties the versions together, the latest by ``seq`` wins."""

    downtime_id: Identifier
    equipment_id: Identifier = Field(pattern=SITE_PATTERN)
    start: AwareDatetime
    end: AwareDatetime | None = Field(default=None, description="null while still down")
    reason_code: Identifier
    reason: str | None = Field(default=None, max_length=500)
    category: DowntimeCategory
    work_order_id: OrderId | None = None

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        _ordered(self.start, self.end, "downtime")
        return self


class PlannedMaintenance(Contract):
    """A planned maintenance window that takes hours out of a shift."""

    start: AwareDatetime
    end: AwareDatetime
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        _ordered(self.start, self.end, "planned maintenance")
        return self


class EquipmentCapability(Contract):
    """Payload of ``equipment.capability``: ISA-95 production capability of one work center in
    one shift, for the APS: the hours it is available, after planned maintenance."""

    equipment_id: Identifier = Field(pattern=SITE_PATTERN, description="the work center")
    shift_id: Identifier
    shift_start: AwareDatetime
    shift_end: AwareDatetime
    available_hours: float = Field(ge=0, le=24 * 31)
    planned_maintenance: list[PlannedMaintenance] = Field(default_factory=list, max_length=100)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        _ordered(self.shift_start, self.shift_end, "shift")
        return self


class ProductionThroughput(Contract):
    """Payload of ``production.throughput``: good and scrap units one piece of equipment made
    in one interval."""

    equipment_id: Identifier = Field(pattern=SITE_PATTERN)
    work_order_id: OrderId | None = None
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    good_count: int = Field(ge=0)
    scrap_count: int = Field(default=0, ge=0)
    unit: str = Field(default="pcs", min_length=1, max_length=32)

    @model_validator(mode="after")
    def _in_order(self) -> Self:
        _ordered(self.interval_start, self.interval_end, "interval")
        return self


class ProductionYield(Contract):
    """Payload of ``production.yield``: the share of good output of one piece of equipment in
    one interval; ``yield_percent`` is computed from the counts when the MES does not give it."""

    equipment_id: Identifier = Field(pattern=SITE_PATTERN)
    work_order_id: OrderId | None = None
    interval_start: AwareDatetime
    interval_end: AwareDatetime
    good_count: int = Field(ge=0)
    total_count: int = Field(ge=0)
    yield_percent: float = Field(ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _computed_yield(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("yield_percent") is None:
            good, total = data.get("good_count"), data.get("total_count")
            if isinstance(good, int) and isinstance(total, int) and good > total:
                raise ValueError("good_count must not exceed total_count")
            if isinstance(good, int) and isinstance(total, int) and total > 0:
                data = {**data, "yield_percent": round(100 * good / total, 3)}
            elif total == 0:
                data = {**data, "yield_percent": 0.0}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _ordered(self.interval_start, self.interval_end, "interval")
        if self.good_count > self.total_count:
            raise ValueError("good_count must not exceed total_count")
        return self


class WorkStatusMessage(Envelope[WorkStatus]):
    """``work.status`` on ``<prefix>/<site>/up/mes/workorder/<work_order_id>/status``."""

    type: Literal["work.status"] = WORK_STATUS_TYPE
    schema_version: Literal[1] = MES_VERSION


class EquipmentDowntimeMessage(Envelope[EquipmentDowntime]):
    """``equipment.downtime`` on ``<prefix>/<site>/up/mes/equipment/<equipment_id>/downtime``."""

    type: Literal["equipment.downtime"] = EQUIPMENT_DOWNTIME_TYPE
    schema_version: Literal[1] = MES_VERSION


class EquipmentCapabilityMessage(Envelope[EquipmentCapability]):
    """``equipment.capability`` on ``<prefix>/<site>/up/mes/equipment/<id>/capability``."""

    type: Literal["equipment.capability"] = EQUIPMENT_CAPABILITY_TYPE
    schema_version: Literal[1] = MES_VERSION


class ProductionThroughputMessage(Envelope[ProductionThroughput]):
    """``production.throughput`` on ``<prefix>/<site>/up/mes/equipment/<id>/throughput``."""

    type: Literal["production.throughput"] = PRODUCTION_THROUGHPUT_TYPE
    schema_version: Literal[1] = MES_VERSION


class ProductionYieldMessage(Envelope[ProductionYield]):
    """``production.yield`` on ``<prefix>/<site>/up/mes/equipment/<equipment_id>/yield``."""

    type: Literal["production.yield"] = PRODUCTION_YIELD_TYPE
    schema_version: Literal[1] = MES_VERSION


MesMessageType = Literal[
    "work.status",
    "equipment.downtime",
    "equipment.capability",
    "production.throughput",
    "production.yield",
]


@dataclass(frozen=True)
class MesMessageKind:
    """How one MES message type travels: its models, stream, topic, event time and lane."""

    message_type: str
    payload: type[Contract]
    message: type[Envelope[Any]]
    business: bool
    """True: never evicted from the outbox, strict order (business lane); False: telemetry."""
    key: Callable[[Any], str]
    """The payload's ordering key: the work order or the equipment."""
    leaf: str
    """The last topic level and stream suffix: status, downtime, capability, throughput…"""
    event_time: Callable[[Any], datetime]
    summary: str

    def stream(self, payload: Any) -> str:
        """The ordering key of this payload's messages."""
        if self._group == "workorder":
            return f"workorder/{self.key(payload)}"
        return f"equipment/{self.key(payload)}/{self.leaf}"

    def topic(self, topics: Topics, payload: Any) -> str:
        """Where this payload's message goes; raises ValueError for a key that cannot be a
        topic level."""
        return mes_topic(topics, self._group, self.key(payload), self.leaf)

    @property
    def _group(self) -> str:
        return "workorder" if self.message_type == WORK_STATUS_TYPE else "equipment"


def mes_topic(topics: Topics, group: str, key: str, leaf: str) -> str:
    """``<prefix>/<site>/up/mes/<group>/<key>/<leaf>``; the key must be one topic level."""
    if not key or any(char in key for char in "/+#") or key in (".", ".."):
        raise ValueError(f"{key[:140]!r} cannot be a topic level")
    return f"{topics.root}/up/mes/{group}/{key}/{leaf}"


MES_MESSAGES: dict[str, MesMessageKind] = {
    kind.message_type: kind
    for kind in (
        MesMessageKind(
            WORK_STATUS_TYPE,
            WorkStatus,
            WorkStatusMessage,
            business=True,
            key=lambda p: p.work_order_id,
            leaf="status",
            event_time=lambda p: p.changed_at,
            summary="A work order's execution state at the MES changed.",
        ),
        MesMessageKind(
            EQUIPMENT_DOWNTIME_TYPE,
            EquipmentDowntime,
            EquipmentDowntimeMessage,
            business=True,
            key=lambda p: p.equipment_id,
            leaf="downtime",
            event_time=lambda p: p.end or p.start,
            summary="A downtime event from the MES's downtime log (start, end, reason code).",
        ),
        MesMessageKind(
            EQUIPMENT_CAPABILITY_TYPE,
            EquipmentCapability,
            EquipmentCapabilityMessage,
            business=True,
            key=lambda p: p.equipment_id,
            leaf="capability",
            event_time=lambda p: p.shift_start,
            summary="Available hours of a work center in a shift, after planned maintenance.",
        ),
        MesMessageKind(
            PRODUCTION_THROUGHPUT_TYPE,
            ProductionThroughput,
            ProductionThroughputMessage,
            business=False,
            key=lambda p: p.equipment_id,
            leaf="throughput",
            event_time=lambda p: p.interval_end,
            summary="Good and scrap units of one piece of equipment in one interval.",
        ),
        MesMessageKind(
            PRODUCTION_YIELD_TYPE,
            ProductionYield,
            ProductionYieldMessage,
            business=False,
            key=lambda p: p.equipment_id,
            leaf="yield",
            event_time=lambda p: p.interval_end,
            summary="The share of good output of one piece of equipment in one interval.",
        ),
    )
}
"""Every MES message type → how it travels; the one table the poller and the docs read."""

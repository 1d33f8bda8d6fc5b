"""Schedules, down from HQ to the plant, on one topic per site: ``<prefix>/<site>/down/schedule``.

The vocabulary is ISA-95 / B2MML, cut down to what a plant needs to run an order:

    ProductionOrder          an OperationsRequest (B2MML): one job order for the plant
    ├── request_state        B2MML RequestState: Forecast, Released, Held, Cancelled
    ├── quantity             QuantityValue: a decimal string and a unit of measure
    ├── materials[]          MaterialRequirement with MaterialUse Consumed / Produced
    └── segments[]           SegmentRequirement: process segment, equipment, duration

Every message shares the site's one stream, ``schedule``, and carries the site's down sequence
number in ``seq``, so the agent applies a site's changes in the order HQ made them and sees a gap
(then asks for a ``schedule.snapshot``). ``seq`` counts from 1 within a ``seq_epoch`` (0 unless
HQ ever restarted its count): a message with a higher epoch than any before is a sequence
reset, and its seq the first of a new count; see ``DownEnvelope``.

Every change to an order, holds and cancellations included, carries the order's new
``revision``: the plant applies an order id and revision once, rejects a revision older than
the one it applied as stale, and the revision it applied, with other content, as a conflict.

Quantities travel as JSON strings in plain decimal notation (``"12.500"``), never as JSON numbers:
most JSON parsers read a number into a binary float, so the precision would be lost in the
consumer's parser before any validation could see it.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)

from plantsync.contracts.alarms import ALARM_ACK_TYPE, AlarmAck
from plantsync.contracts.envelope import Contract, Envelope, PayloadT
from plantsync.contracts.topics import ORDER_ID_PATTERN

SCHEDULE_STREAM: Literal["schedule"] = "schedule"
"""The one ordering key of a site's down messages; ``seq`` counts on it."""

SCHEDULE_RELEASE_TYPE: Literal["schedule.release"] = "schedule.release"
SCHEDULE_REVISION_TYPE: Literal["schedule.revision"] = "schedule.revision"
SCHEDULE_SNAPSHOT_TYPE: Literal["schedule.snapshot"] = "schedule.snapshot"
ORDER_HOLD_TYPE: Literal["order.hold"] = "order.hold"
ORDER_HOLD_RELEASE_TYPE: Literal["order.hold-release"] = "order.hold-release"
ORDER_MATERIAL_SUBSTITUTION_TYPE: Literal["order.material-substitution"] = (
    "order.material-substitution"
)
ORDER_CANCEL_TYPE: Literal["order.cancel"] = "order.cancel"
SCHEDULE_VERSION: Literal[1] = 1
"""The payload version of every down message type; the agent accepts exactly this one."""

DECIMAL_PATTERN = r"^[0-9]{1,18}(\.[0-9]{1,12})?$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)


def _decimal_from_wire(value: Any) -> Decimal:
    """Read a quantity from its decimal string; a JSON number would already have lost precision."""
    if isinstance(value, Decimal):
        # Built in Python: hold it to what the wire form can carry.
        text = format(value, "f") if value.is_finite() else "not finite"
    elif isinstance(value, str):
        text = value
    else:
        raise ValueError('a quantity is a decimal string such as "12.5", not a JSON number')
    if not _DECIMAL_RE.fullmatch(text):
        raise ValueError("a quantity is plain decimal notation: up to 18 digits, 12 decimals")
    return Decimal(text)


def _decimal_to_wire(value: Decimal) -> str:
    # 'f' never produces an exponent, so '1E+3' goes out as '1000'.
    return format(value, "f")


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_from_wire),
    PlainSerializer(_decimal_to_wire, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "a non-negative decimal in plain notation, kept exact",
            "examples": ["12.500"],
        }
    ),
]
"""A non-negative ``Decimal`` that travels as a JSON string, so no consumer loses precision."""

Identifier = Annotated[str, Field(min_length=1, max_length=128)]
"""An id from HQ or the plant (product, material, work center, equipment ...)."""

OrderId = Annotated[
    str,
    Field(pattern=ORDER_ID_PATTERN, description="the job order id; a topic level, so no / + #"),
]
Revision = Annotated[int, Field(ge=1, description="the order's revision; each change bumps it")]
Reason = Annotated[str, Field(min_length=1, max_length=500)]


class RequestState(StrEnum):
    """B2MML RequestState, the values HQ sets on an order it sends down."""

    FORECAST = "Forecast"
    RELEASED = "Released"
    HELD = "Held"
    CANCELLED = "Cancelled"


class MaterialUse(StrEnum):
    """B2MML MaterialUse, the two a production order needs."""

    CONSUMED = "Consumed"
    PRODUCED = "Produced"


class Quantity(Contract):
    """B2MML QuantityValue: an exact decimal (a JSON string on the wire) and its unit."""

    value: DecimalString
    unit: str = Field(min_length=1, max_length=32, description="unit of measure, e.g. 'kg'")


def _positive(quantity: Quantity) -> Quantity:
    if quantity.value <= 0:
        raise ValueError("the quantity must be greater than zero")
    return quantity


PositiveQuantity = Annotated[
    Quantity, AfterValidator(_positive), Field(description="value greater than zero")
]


class MaterialRequirement(Contract):
    """B2MML MaterialRequirement: a material the order consumes or produces."""

    material_id: Identifier
    quantity: PositiveQuantity
    use: MaterialUse


class SegmentRequirement(Contract):
    """B2MML SegmentRequirement: one process segment of the order, on which equipment, how long."""

    process_segment_id: Identifier
    equipment_id: Identifier | None = None
    duration: timedelta = Field(gt=timedelta(0), description="ISO 8601 duration, e.g. 'PT45M'")


class ProductionOrder(Contract):
    """One job order for the plant (a B2MML OperationsRequest), at one revision."""

    order_id: OrderId
    revision: Revision
    product_id: Identifier
    quantity: PositiveQuantity
    work_center: Identifier
    equipment_id: Identifier | None = None
    planned_start: AwareDatetime
    planned_end: AwareDatetime
    priority: int = Field(ge=1, le=1000, description="1 is the most urgent")
    request_state: RequestState
    materials: list[MaterialRequirement] = Field(default_factory=list)
    segments: list[SegmentRequirement] = Field(default_factory=list)

    @model_validator(mode="after")
    def _end_after_start(self) -> ProductionOrder:
        if self.planned_end <= self.planned_start:
            raise ValueError("planned_end must be later than planned_start")
        return self


def _unique_order_ids(orders: list[ProductionOrder]) -> list[ProductionOrder]:
    seen: set[str] = set()
    for order in orders:
        if order.order_id in seen:
            raise ValueError(f"order {order.order_id} appears more than once")
        seen.add(order.order_id)
    return orders


Orders = Annotated[list[ProductionOrder], AfterValidator(_unique_order_ids)]


class ScheduleRelease(Contract):
    """Payload of ``schedule.release`` and ``schedule.revision``: orders, each at its revision."""

    orders: Annotated[Orders, Field(min_length=1)]


class ScheduleSnapshot(Contract):
    """Payload of ``schedule.snapshot``: every open order of the site, HQ's answer to a resync."""

    orders: Orders
    as_of_seq: int = Field(ge=0, description="the last down seq whose changes it includes")


class OrderHold(Contract):
    """Payload of ``order.hold`` and ``order.hold-release``."""

    order_id: OrderId
    revision: Revision
    reason: Reason


class OrderCancel(Contract):
    """Payload of ``order.cancel``."""

    order_id: OrderId
    revision: Revision
    reason: Reason


class MaterialSubstitution(Contract):
    """Payload of ``order.material-substitution``: use one material in place of another."""

    order_id: OrderId
    revision: Revision
    replaced_material_id: Identifier
    substitute_material_id: Identifier
    quantity: PositiveQuantity
    reason: Reason | None = None

    @model_validator(mode="after")
    def _different_materials(self) -> MaterialSubstitution:
        if self.replaced_material_id == self.substitute_material_id:
            raise ValueError("substitute_material_id must differ from replaced_material_id")
        return self


MAX_SEQ_EPOCH = 2**53 - 1
"""The largest epoch: exact in every JSON reader (a Unix time in ms fits)."""


class DownEnvelope(Envelope[PayloadT], Generic[PayloadT]):
    """The envelope of every down message: the common one and the epoch of the site's count.

    A sequence reset is HQ starting its down count again (its counter was lost, restored from
    a backup, or moved to another system): it sends the next message with a ``seq_epoch``
    higher than any it sent before, and ``seq`` counts from 1 again in it. The site takes the
    first message of a higher epoch as the start of a new count (seqs it skipped in the new
    epoch are a gap), and never compares seqs across epochs. A message of a lower epoch than
    the site's is late news from an old count: it is decided as usual but says nothing about
    gaps. Without ``seq_epoch`` a message is in epoch 0, so an HQ that never resets never
    sends it. HQ that does not know its last epoch may take the Unix time in milliseconds.
    """

    seq_epoch: int = Field(
        default=0,
        ge=0,
        le=MAX_SEQ_EPOCH,
        exclude_if=lambda epoch: epoch == 0,  # absent on the wire, as HQ sends it
        description=(
            "the epoch of the site's down seq: a higher one than before resets the count"
            " (seq starts again at 1); 0 when absent"
        ),
    )


class ScheduleReleaseMessage(DownEnvelope[ScheduleRelease]):
    """``schedule.release``: orders HQ releases to the plant."""

    type: Literal["schedule.release"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class ScheduleRevisionMessage(DownEnvelope[ScheduleRelease]):
    """``schedule.revision``: orders the plant already has, at higher revisions."""

    type: Literal["schedule.revision"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class OrderHoldMessage(DownEnvelope[OrderHold]):
    """``order.hold``: stop an order from starting (or continuing), e.g. a quality hold."""

    type: Literal["order.hold"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class OrderHoldReleaseMessage(DownEnvelope[OrderHold]):
    """``order.hold-release``: lift a hold."""

    type: Literal["order.hold-release"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class MaterialSubstitutionMessage(DownEnvelope[MaterialSubstitution]):
    """``order.material-substitution``."""

    type: Literal["order.material-substitution"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class OrderCancelMessage(DownEnvelope[OrderCancel]):
    """``order.cancel``."""

    type: Literal["order.cancel"]
    schema_version: Literal[1]
    stream: Literal["schedule"]


class ScheduleSnapshotMessage(DownEnvelope[ScheduleSnapshot]):
    """``schedule.snapshot``: the site's open orders; gap detection resumes after its ``seq``."""

    type: Literal["schedule.snapshot"]
    schema_version: Literal[1]
    stream: Literal["schedule"]

    @model_validator(mode="after")
    def _reflects_earlier_seq(self) -> ScheduleSnapshotMessage:
        if self.payload.as_of_seq >= self.seq:
            raise ValueError("payload.as_of_seq must be lower than the snapshot's own seq")
        return self


class AlarmAckMessage(DownEnvelope[AlarmAck]):
    """``alarm.ack`` on ``<prefix>/<site>/down/alarm``: acknowledge an alarm (``alarms.py``)."""

    type: Literal["alarm.ack"]
    schema_version: Literal[1]
    stream: Literal["alarm-acks"]


DownMessage = Annotated[
    ScheduleReleaseMessage
    | ScheduleRevisionMessage
    | OrderHoldMessage
    | OrderHoldReleaseMessage
    | MaterialSubstitutionMessage
    | OrderCancelMessage
    | ScheduleSnapshotMessage
    | AlarmAckMessage,
    Field(discriminator="type"),
]
"""Any message HQ sends down, told apart by ``type``."""

DOWN_MESSAGE_CLASSES: dict[str, type[Envelope[Any]]] = {
    SCHEDULE_RELEASE_TYPE: ScheduleReleaseMessage,
    SCHEDULE_REVISION_TYPE: ScheduleRevisionMessage,
    ORDER_HOLD_TYPE: OrderHoldMessage,
    ORDER_HOLD_RELEASE_TYPE: OrderHoldReleaseMessage,
    ORDER_MATERIAL_SUBSTITUTION_TYPE: MaterialSubstitutionMessage,
    ORDER_CANCEL_TYPE: OrderCancelMessage,
    SCHEDULE_SNAPSHOT_TYPE: ScheduleSnapshotMessage,
    ALARM_ACK_TYPE: AlarmAckMessage,
}
"""Down message type → its model, for the parser and the document generator."""

SUPPORTED_DOWN_VERSIONS: dict[str, frozenset[int]] = {
    message_type: frozenset({SCHEDULE_VERSION}) for message_type in DOWN_MESSAGE_CLASSES
}

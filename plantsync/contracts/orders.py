"""Order traffic up from the plant to HQ: acknowledgements, order status, confirmations, resync.

    schedule.ack              <prefix>/<site>/up/ack                        stream "acks"
    order.status              <prefix>/<site>/up/order/<order_id>/status        stream "order/<id>"
    production.confirmation   <prefix>/<site>/up/order/<order_id>/confirmation  stream "order/<id>"
    resync.request            <prefix>/<site>/up/resync                     stream "resync"

Status and confirmations of one order share a stream, so HQ sees them in the order they happened.
Every down message is answered by at least one ``schedule.ack`` carrying the original's id, and
more as its fate changes (accepted, then waiting-for-approval, then applied). The ack's
``correlation_id`` is the original's correlation id, or its id when it had none, so HQ can follow
a schedule from release to confirmation.

An ``order.status`` or ``production.confirmation`` for an order the site never received from HQ
(not in its last-known-good schedule) is sent all the same, since plants make unplanned orders
(rework, samples, a line started by hand), but its payload says ``"unplanned": true``. A
confirmation carries the plant's ``confirmation_id``: the agent sends one message per id, so
HQ books a quantity once even when the plant system posts it again.

Job order states are those of OPC UA for ISA-95 Job Control (OPC 10031-4); confirmations are the
plant's part of a B2MML OperationsResponse (SegmentResponse with material actuals).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from plantsync.contracts.envelope import Contract, Envelope
from plantsync.contracts.schedule import (
    Identifier,
    OrderId,
    Quantity,
    RequestState,
    Revision,
)

SCHEDULE_ACK_TYPE: Literal["schedule.ack"] = "schedule.ack"
ORDER_STATUS_TYPE: Literal["order.status"] = "order.status"
PRODUCTION_CONFIRMATION_TYPE: Literal["production.confirmation"] = "production.confirmation"
RESYNC_REQUEST_TYPE: Literal["resync.request"] = "resync.request"
ORDERS_VERSION: Literal[1] = 1

ACK_STREAM: Literal["acks"] = "acks"
RESYNC_STREAM: Literal["resync"] = "resync"


def order_stream(order_id: str) -> str:
    """The ordering key of one order's status and confirmations."""
    return f"order/{order_id}"


class AckOutcome(StrEnum):
    """What became of a down message; one message may be acknowledged several times."""

    ACCEPTED = "accepted"  # valid and committed to the inbox
    REJECTED = "rejected"  # never applied; reason_code says why
    WAITING_FOR_APPROVAL = "waiting-for-approval"  # held for a plant planner (frozen horizon)
    APPLIED = "applied"  # the plant systems took it
    FAILED = "failed"  # applying it failed for good; reason_code says why
    PENDING = "pending"  # a plant system is unreachable; retried with backoff


class ReasonCode(StrEnum):
    """Why a down message was rejected, failed or is still pending."""

    STALE = "stale"  # a revision older than the one applied
    CONFLICT = "conflict"  # the applied revision, with other content
    DUPLICATE = "duplicate"  # this message id was already received
    MALFORMED_JSON = "malformed-json"  # not UTF-8 JSON, or not a JSON object
    SCHEMA_VIOLATION = "schema-violation"  # JSON, but not a valid message of its type
    UNKNOWN_TYPE = "unknown-type"
    UNKNOWN_VERSION = "unknown-version"  # a schema_version this agent does not support
    OVERSIZED = "oversized"  # larger than the agent's limit; not parsed
    WRONG_SITE = "wrong-site"  # addressed to another site
    UNKNOWN_ORDER = "unknown-order"  # a change to an order the plant does not have
    PLANT_REJECTED = "plant-rejected"  # the MES or the machine refused it
    APPROVAL_REJECTED = "approval-rejected"  # a plant planner refused it
    PLANT_UNAVAILABLE = "plant-unavailable"  # the MES or the machine cannot be reached
    UNKNOWN_SOURCE = "unknown-source"  # alarm.ack: no such link here, or it takes no HQ acks
    EXPIRED = "expired"  # alarm.ack: not applied within the link's acknowledge_expiry


class OrderRef(Contract):
    """One order, at one revision, that a down message concerned."""

    order_id: OrderId
    revision: Revision


class ScheduleAck(Contract):
    """Payload of ``schedule.ack``."""

    original_id: str = Field(
        min_length=1,
        max_length=128,
        description="id of the acknowledged message, or 'sha256:<hex>' of its bytes if unreadable",
    )
    original_type: str | None = Field(default=None, max_length=64)
    outcome: AckOutcome
    reason_code: ReasonCode | None = None
    reason: str | None = Field(default=None, max_length=1000)
    orders: list[OrderRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _reason_for_bad_outcomes(self) -> ScheduleAck:
        if self.outcome in (AckOutcome.REJECTED, AckOutcome.FAILED) and self.reason_code is None:
            raise ValueError(f"an ack with outcome {self.outcome.value!r} needs a reason_code")
        return self


class ScheduleAckMessage(Envelope[ScheduleAck]):
    """``schedule.ack`` on ``<prefix>/<site>/up/ack``."""

    type: Literal["schedule.ack"] = SCHEDULE_ACK_TYPE
    schema_version: Literal[1] = ORDERS_VERSION
    stream: Literal["acks"] = ACK_STREAM
    correlation_id: str = Field(
        description="the original's correlation_id, or its id when it had none"
    )


class JobOrderState(StrEnum):
    """OPC UA ISA-95 Job Control (OPC 10031-4) job order states."""

    NOT_ALLOWED_TO_START = "NotAllowedToStart"
    ALLOWED_TO_START = "AllowedToStart"
    RUNNING = "Running"
    INTERRUPTED = "Interrupted"
    ENDED = "Ended"
    ABORTED = "Aborted"


class OrderStatus(Contract):
    """A job order's state at the plant changed: what the plant reports (the local API's body);
    ``OrderStatusPayload`` is what HQ receives."""

    order_id: OrderId
    revision: Revision
    state: JobOrderState
    request_state: RequestState | None = Field(
        default=None, description="HQ's request state as the plant last applied it"
    )
    equipment_id: Identifier | None = None
    changed_at: AwareDatetime


class ProductionConfirmation(Contract):
    """What the plant made (B2MML OperationsResponse), as the plant reports it (the local API's
    body); ``ConfirmationPayload`` is what HQ receives."""

    confirmation_id: Identifier
    order_id: OrderId
    revision: Revision
    good_quantity: Quantity
    scrap_quantity: Quantity
    actual_start: AwareDatetime
    actual_end: AwareDatetime
    equipment_id: Identifier | None = None
    material_lot: Identifier | None = None
    final: bool = Field(description="true on the last confirmation of the order")

    @model_validator(mode="after")
    def _consistent(self) -> ProductionConfirmation:
        if self.actual_end < self.actual_start:
            raise ValueError("actual_end must not be earlier than actual_start")
        if self.good_quantity.unit != self.scrap_quantity.unit:
            raise ValueError("good_quantity and scrap_quantity must have the same unit")
        return self


_UNPLANNED = Field(
    default=False,
    description="true when the order is not in the site's last-known-good schedule: HQ never"
    " released it to this site (or the agent's store was replaced since); set by the agent",
)


class OrderStatusPayload(OrderStatus):
    """Payload of ``order.status``: the plant's report, and whether HQ planned the order."""

    unplanned: bool = _UNPLANNED


class ConfirmationPayload(ProductionConfirmation):
    """Payload of ``production.confirmation``: the plant's report, and whether HQ planned the
    order."""

    unplanned: bool = _UNPLANNED


class OrderStatusMessage(Envelope[OrderStatusPayload]):
    """``order.status`` on ``<prefix>/<site>/up/order/<order_id>/status``."""

    type: Literal["order.status"] = ORDER_STATUS_TYPE
    schema_version: Literal[1] = ORDERS_VERSION

    @model_validator(mode="after")
    def _on_order_stream(self) -> OrderStatusMessage:
        _check_order_stream(self.stream, self.payload.order_id)
        return self


class ProductionConfirmationMessage(Envelope[ConfirmationPayload]):
    """``production.confirmation`` on ``<prefix>/<site>/up/order/<order_id>/confirmation``."""

    type: Literal["production.confirmation"] = PRODUCTION_CONFIRMATION_TYPE
    schema_version: Literal[1] = ORDERS_VERSION

    @model_validator(mode="after")
    def _on_order_stream(self) -> ProductionConfirmationMessage:
        _check_order_stream(self.stream, self.payload.order_id)
        return self


def _check_order_stream(stream: str, order_id: str) -> None:
    if stream != order_stream(order_id):
        raise ValueError(f"stream must be {order_stream(order_id)!r}")


class ResyncReason(StrEnum):
    """Why the agent asks HQ for a snapshot."""

    GAP = "gap"  # a down seq was skipped: the broker dropped something
    NO_SESSION = "no-session"  # the broker had no session for the agent: queued messages are gone
    STARTUP = "startup"  # first start, or a start with an empty inbox


class ResyncRequest(Contract):
    """Payload of ``resync.request``; HQ answers with a ``schedule.snapshot`` on the down topic."""

    reason: ResyncReason
    last_seq_seen: int = Field(ge=0, description="the last down seq applied in order; 0 if none")
    received_seq: int | None = Field(
        default=None, ge=1, description="for a gap: the seq that arrived instead of the next"
    )


class ResyncRequestMessage(Envelope[ResyncRequest]):
    """``resync.request`` on ``<prefix>/<site>/up/resync``."""

    type: Literal["resync.request"] = RESYNC_REQUEST_TYPE
    schema_version: Literal[1] = ORDERS_VERSION
    stream: Literal["resync"] = RESYNC_STREAM


OrderMessage = Annotated[
    ScheduleAckMessage | OrderStatusMessage | ProductionConfirmationMessage | ResyncRequestMessage,
    Field(discriminator="type"),
]
"""Any order-related message the agent sends up, told apart by ``type`` (for HQ consumers)."""

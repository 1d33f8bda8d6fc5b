"""Up messages: acks, order status, confirmations and resync requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from plantsync.contracts import (
    AckOutcome,
    ConfirmationPayload,
    Envelope,
    JobOrderState,
    OrderMessage,
    OrderRef,
    OrderStatus,
    OrderStatusMessage,
    OrderStatusPayload,
    ProductionConfirmation,
    ProductionConfirmationMessage,
    Quantity,
    ReasonCode,
    RequestState,
    ResyncReason,
    ResyncRequest,
    ResyncRequestMessage,
    ScheduleAck,
    ScheduleAckMessage,
    new_message_id,
    order_stream,
)

UP: TypeAdapter[OrderMessage] = TypeAdapter(OrderMessage)
NOW = datetime(2026, 11, 25, 9, 12, 3, 512000, tzinfo=UTC)


def header(stream: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": new_message_id(),
        "site": "plant-01",
        "source": "agent",
        "stream": stream,
        "seq": 7,
        "event_time": NOW,
        **overrides,
    }


def ack(**payload: Any) -> ScheduleAckMessage:
    fields = {"original_id": "0193a1c2-7c42-7000-8eb4-cb2acc6a4ece", **payload}
    return ScheduleAckMessage(
        **header("acks", correlation_id="plan-2026-48"), payload=ScheduleAck(**fields)
    )


def confirmation(**overrides: Any) -> ProductionConfirmation:
    fields: dict[str, Any] = {
        "confirmation_id": "CNF-1",
        "order_id": "JO-4711",
        "revision": 2,
        "good_quantity": Quantity(value=Decimal("598.250"), unit="kg"),
        "scrap_quantity": Quantity(value=Decimal("1.75"), unit="kg"),
        "actual_start": NOW,
        "actual_end": NOW + timedelta(hours=3),
        "equipment_id": "press-1",
        "material_lot": "LOT-2026-1125-01",
        "final": False,
        **overrides,
    }
    return ProductionConfirmation(**fields)


def reported(*, unplanned: bool = False) -> ConfirmationPayload:
    """A confirmation as HQ receives it: the plant's report and the agent's flag."""
    return ConfirmationPayload(**dict(confirmation()), unplanned=unplanned)


def examples() -> list[Envelope[Any]]:
    stream = order_stream("JO-4711")
    status = OrderStatus(
        order_id="JO-4711",
        revision=2,
        state=JobOrderState.RUNNING,
        request_state=RequestState.RELEASED,
        equipment_id="press-1",
        changed_at=NOW,
    )
    return [
        ack(
            original_type="schedule.revision",
            outcome=AckOutcome.APPLIED,
            orders=[OrderRef(order_id="JO-4711", revision=2)],
        ),
        OrderStatusMessage(**header(stream), payload=OrderStatusPayload(**dict(status))),
        ProductionConfirmationMessage(**header(stream), payload=reported()),
        ResyncRequestMessage(
            **header("resync"),
            payload=ResyncRequest(reason=ResyncReason.GAP, last_seq_seen=40, received_seq=42),
        ),
    ]


@pytest.mark.parametrize("message", examples(), ids=lambda message: message.type)
def test_every_up_message_round_trips_through_json(message: BaseModel) -> None:
    decoded = UP.validate_json(message.model_dump_json())

    assert decoded == message


def test_confirmed_quantities_go_out_as_exact_strings() -> None:
    message = ProductionConfirmationMessage(**header("order/JO-4711"), payload=reported())

    payload = json.loads(message.model_dump_json())["payload"]

    assert payload["good_quantity"] == {"value": "598.250", "unit": "kg"}
    assert payload["scrap_quantity"] == {"value": "1.75", "unit": "kg"}


def test_a_confirmation_may_report_zero_scrap() -> None:
    zero = Quantity(value=Decimal("0"), unit="kg")

    assert confirmation(scrap_quantity=zero).scrap_quantity.value == 0


def test_a_confirmation_ends_no_earlier_than_it_started() -> None:
    with pytest.raises(ValidationError, match="actual_end"):
        confirmation(actual_end=NOW - timedelta(seconds=1))


def test_good_and_scrap_quantities_share_a_unit() -> None:
    with pytest.raises(ValidationError, match="same unit"):
        confirmation(scrap_quantity=Quantity(value=Decimal(2), unit="pcs"))


@pytest.mark.parametrize("index", [1, 2], ids=["order.status", "production.confirmation"])
def test_order_messages_travel_on_their_orders_stream(index: int) -> None:
    message = examples()[index]
    fields = {**message.model_dump(), "stream": "order/JO-9999"}

    with pytest.raises(ValidationError, match="order/JO-4711"):
        type(message).model_validate(fields)


@pytest.mark.parametrize("outcome", [AckOutcome.REJECTED, AckOutcome.FAILED])
def test_a_rejection_or_failure_carries_a_reason_code(outcome: AckOutcome) -> None:
    with pytest.raises(ValidationError, match="reason_code"):
        ack(outcome=outcome)


def test_a_pending_ack_may_say_the_plant_is_unavailable() -> None:
    message = ack(outcome=AckOutcome.PENDING, reason_code=ReasonCode.PLANT_UNAVAILABLE)

    assert json.loads(message.model_dump_json())["payload"]["reason_code"] == "plant-unavailable"


def test_an_ack_always_carries_a_correlation_id() -> None:
    fields = header("acks")
    payload = ScheduleAck(original_id="x", outcome=AckOutcome.ACCEPTED)

    with pytest.raises(ValidationError, match="correlation_id"):
        ScheduleAckMessage(**fields, payload=payload)


def test_up_messages_fill_in_type_version_and_fixed_streams() -> None:
    wire = json.loads(ack(outcome=AckOutcome.ACCEPTED).model_dump_json())

    assert (wire["type"], wire["schema_version"], wire["stream"]) == ("schedule.ack", 1, "acks")

"""Down messages: every type round-trips, quantities stay exact, the order rules hold."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from plantsync.contracts import (
    DOWN_MESSAGE_CLASSES,
    DownMessage,
    ProductionOrder,
    Quantity,
    ScheduleReleaseMessage,
    ScheduleSnapshotMessage,
)
from tests.contracts.examples import ORDER, PAYLOADS, down_message

DOWN: TypeAdapter[DownMessage] = TypeAdapter(DownMessage)


@pytest.mark.parametrize("message_type", sorted(PAYLOADS))
def test_every_down_message_round_trips_through_json(message_type: str) -> None:
    message = DOWN.validate_python(down_message(message_type))

    assert type(message) is DOWN_MESSAGE_CLASSES[message_type]
    assert DOWN.validate_json(message.model_dump_json()) == message


@pytest.mark.parametrize("message_type", sorted(PAYLOADS))
def test_every_down_message_serializes_back_to_the_json_it_was_read_from(
    message_type: str,
) -> None:
    wire = down_message(message_type)

    message = DOWN.validate_json(json.dumps(wire))

    assert message.model_dump(mode="json") == _normalized(wire)


def _normalized(wire: dict[str, Any]) -> dict[str, Any]:
    # The only rewrites are canonical forms: timestamps keep their instant and Z.
    text = json.dumps(wire).replace(".000Z", "Z")
    return dict(json.loads(text))


def test_every_down_type_is_in_the_union() -> None:
    assert set(DOWN_MESSAGE_CLASSES) == set(PAYLOADS)


@pytest.mark.parametrize(
    "text", ["0.1", "1250.000000000001", "123456789012345678.123456789012", "0"]
)
def test_quantities_keep_every_digit_through_json(text: str) -> None:
    quantity = Quantity.model_validate_json(json.dumps({"value": text, "unit": "kg"}))

    assert quantity.value == Decimal(text)
    assert json.loads(quantity.model_dump_json())["value"] == text


def test_quantities_are_written_without_an_exponent() -> None:
    quantity = Quantity(value=Decimal("1E+3"), unit="pcs")

    assert json.loads(quantity.model_dump_json())["value"] == "1000"


@pytest.mark.parametrize("value", [12.5, 12, "1e3", "-1", "NaN", "1,5", " 1", "1." + "0" * 13])
def test_quantities_are_refused_unless_plain_decimal_strings(value: object) -> None:
    with pytest.raises(ValidationError, match="value"):
        Quantity.model_validate({"value": value, "unit": "kg"})


@pytest.mark.parametrize("value", ["-1", "NaN", "Infinity", "1E+30", "0.0000000000001"])
def test_decimals_built_in_python_are_held_to_the_wire_form(value: str) -> None:
    with pytest.raises(ValidationError, match="plain decimal notation"):
        Quantity(value=Decimal(value), unit="kg")


def test_an_order_quantity_must_be_greater_than_zero() -> None:
    with pytest.raises(ValidationError, match="greater than zero"):
        ProductionOrder.model_validate({**ORDER, "quantity": {"value": "0", "unit": "kg"}})


def test_planned_end_must_be_later_than_planned_start() -> None:
    with pytest.raises(ValidationError, match="planned_end must be later"):
        ProductionOrder.model_validate({**ORDER, "planned_end": ORDER["planned_start"]})


def test_planned_times_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="planned_start"):
        ProductionOrder.model_validate({**ORDER, "planned_start": "2026-11-25T06:00:00"})


@pytest.mark.parametrize("revision", [0, -1])
def test_revision_must_be_at_least_one(revision: int) -> None:
    with pytest.raises(ValidationError, match="revision"):
        ProductionOrder.model_validate({**ORDER, "revision": revision})


@pytest.mark.parametrize("order_id", ["JO/4711", "JO+1", "JO#1", "JO 1", "", ".", "x" * 129])
def test_order_ids_that_cannot_be_topic_levels_are_refused(order_id: str) -> None:
    with pytest.raises(ValidationError, match="order_id"):
        ProductionOrder.model_validate({**ORDER, "order_id": order_id})


@pytest.mark.parametrize("priority", [0, 1001])
def test_priority_is_between_1_and_1000(priority: int) -> None:
    with pytest.raises(ValidationError, match="priority"):
        ProductionOrder.model_validate({**ORDER, "priority": priority})


def test_a_release_needs_at_least_one_order() -> None:
    with pytest.raises(ValidationError, match="orders"):
        ScheduleReleaseMessage.model_validate(
            down_message("schedule.release", payload={"orders": []})
        )


def test_a_release_names_each_order_once() -> None:
    payload = {"orders": [ORDER, {**ORDER, "revision": 2}]}

    with pytest.raises(ValidationError, match="appears more than once"):
        ScheduleReleaseMessage.model_validate(down_message("schedule.release", payload=payload))


def test_an_empty_snapshot_says_the_site_has_no_open_orders() -> None:
    wire = down_message("schedule.snapshot", payload={"orders": [], "as_of_seq": 41})

    assert ScheduleSnapshotMessage.model_validate(wire).payload.orders == []


def test_a_snapshot_reflects_a_seq_before_its_own() -> None:
    wire = down_message("schedule.snapshot", seq=41)

    with pytest.raises(ValidationError, match="as_of_seq"):
        ScheduleSnapshotMessage.model_validate(wire)


def test_a_substitute_material_differs_from_the_one_it_replaces() -> None:
    payload = {**PAYLOADS["order.material-substitution"], "substitute_material_id": "RM-7"}

    with pytest.raises(ValidationError, match="must differ"):
        DOWN.validate_python(down_message("order.material-substitution", payload=payload))


@pytest.mark.parametrize(("key", "value"), [("stream", "machine/press-1"), ("schema_version", 2)])
def test_down_messages_name_their_stream_and_version_exactly(key: str, value: object) -> None:
    with pytest.raises(ValidationError, match=key):
        DOWN.validate_python(down_message("order.cancel", **{key: value}))


def test_unknown_fields_are_refused_at_every_level() -> None:
    order = {**ORDER, "colour": "blue"}

    with pytest.raises(ValidationError, match="colour"):
        DOWN.validate_python(down_message("schedule.release", payload={"orders": [order]}))


def test_segment_durations_travel_as_iso_8601() -> None:
    message = DOWN.validate_python(down_message("schedule.release"))

    segments = json.loads(message.model_dump_json())["payload"]["orders"][0]["segments"]
    assert [segment["duration"] for segment in segments] == ["PT2H", "PT5H30M"]

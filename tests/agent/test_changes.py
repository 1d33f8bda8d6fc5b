"""What a revision conflict names: the fields in which two versions of one order revision
differ, compared as values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from plantsync.agent.changes import differences
from plantsync.contracts.schedule import (
    MaterialRequirement,
    MaterialUse,
    ProductionOrder,
    Quantity,
    RequestState,
)

START = datetime(2026, 12, 3, 6, 0, tzinfo=UTC)


def _order(**changes: object) -> ProductionOrder:
    order = ProductionOrder(
        order_id="JO-1",
        revision=3,
        product_id="PRD-1",
        quantity=Quantity(value=Decimal("100"), unit="pcs"),
        work_center="line-1",
        planned_start=START,
        planned_end=START + timedelta(hours=2),
        priority=10,
        request_state=RequestState.RELEASED,
        materials=[
            MaterialRequirement(
                material_id="STEEL",
                quantity=Quantity(value=Decimal(5), unit="kg"),
                use=MaterialUse.CONSUMED,
            )
        ],
    )
    return order.model_copy(update=changes)


def test_the_same_values_written_differently_are_no_difference() -> None:
    other = _order(
        quantity=Quantity(value=Decimal("100.000"), unit="pcs"),
        planned_start=START.astimezone(timezone(timedelta(hours=2))),
    )
    assert differences(_order(), other) == []


def test_nested_differences_are_named_by_their_path() -> None:
    steel = _order().materials[0]
    other = _order(
        quantity=Quantity(value=Decimal(120), unit="pcs"),
        materials=[steel.model_copy(update={"material_id": "ALU"})],
        request_state=RequestState.HELD,
    )
    assert differences(_order(), other) == [
        "quantity.value",
        "request_state",
        "materials[0].material_id",
    ]


def test_a_list_of_another_length_is_named_as_a_whole() -> None:
    assert differences(_order(), _order(materials=[])) == ["materials"]


def test_no_proposed_order_is_no_difference() -> None:
    assert differences(_order(), None) == []

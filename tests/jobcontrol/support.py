"""Orders and changes as the agent hands them to a ScheduleSink, and bounded event reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from plantsync.agent.changes import idempotency_key
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import ProductionOrder, RequestState
from plantsync.drivers.base import OrderChange

WAIT = 5.0
"""Seconds any single expectation may take; generous against a loaded CI machine."""

Event = OrderStatus | ProductionConfirmation
_E = TypeVar("_E", OrderStatus, ProductionConfirmation)


def order(
    order_id: str = "JO-1",
    *,
    revision: int = 1,
    quantity: str = "10.5",
    request_state: RequestState = RequestState.RELEASED,
    equipment_id: str = "press-1",
    priority: int = 5,
) -> ProductionOrder:
    start = datetime.now(UTC) + timedelta(hours=1)
    return ProductionOrder.model_validate(
        {
            "order_id": order_id,
            "revision": revision,
            "product_id": "P-100",
            "quantity": {"value": quantity, "unit": "kg"},
            "work_center": "line-1",
            "equipment_id": equipment_id,
            "planned_start": start.isoformat(),
            "planned_end": (start + timedelta(hours=2)).isoformat(),
            "priority": priority,
            "request_state": request_state,
        }
    )


def change(change_type: str, proposed: ProductionOrder) -> OrderChange:
    """What ``plantsync.agent.changes`` hands the sink for one order of one down message."""
    body: dict[str, object] = {"order": proposed.model_dump(mode="json")}
    if change_type.startswith("order."):
        body["detail"] = {"order_id": proposed.order_id, "reason": "quality hold QH-7"}
    return OrderChange(
        idempotency_key(proposed.order_id, proposed.revision),
        change_type,
        proposed.order_id,
        proposed.revision,
        body,
    )


def revised(previous: ProductionOrder, **changes: object) -> ProductionOrder:
    """The next revision of ``previous`` with ``changes``."""
    return previous.model_copy(update={"revision": previous.revision + 1, **changes})


async def next_event(
    events: AsyncIterator[Event], kind: type[_E], matches: Callable[[_E], bool]
) -> _E:
    """The next event of ``kind`` that ``matches``, skipping everything else."""
    async with asyncio.timeout(WAIT):
        async for event in events:
            if isinstance(event, kind) and matches(event):
                return event
    raise AssertionError("events ended")


async def drain(events: AsyncIterator[Event]) -> None:
    """Read until the iterator raises (the point of the caller's test) or WAIT runs out."""
    async with asyncio.timeout(WAIT):
        async for _ in events:
            pass

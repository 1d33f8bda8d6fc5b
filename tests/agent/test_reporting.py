"""The plant event reporter: each event once, with the correlation id the store keeps for its
order, and a callback per committed confirmation (the metrics' counter)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from plantsync.agent.business import BusinessWriter
from plantsync.agent.reporting import PlantEventReporter
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.inbox import InboxStatus, OrderState
from plantsync.buffer.store import Store
from plantsync.contracts import Topics
from plantsync.contracts.orders import JobOrderState, OrderStatus, ProductionConfirmation
from tests.api.support import confirmation
from tests.contracts.examples import SITE

TOPICS = Topics("plantsync/v1", SITE)


class ReportingPlant:
    """A plant system at the ``PlantEvents`` seam: reports these events, then its link ends."""

    def __init__(self, *events: OrderStatus | ProductionConfirmation) -> None:
        self._events = events

    async def events(self) -> AsyncIterator[OrderStatus | ProductionConfirmation]:
        for event in self._events:
            yield event


def status(order_id: str) -> OrderStatus:
    return OrderStatus(
        order_id=order_id, revision=1, state=JobOrderState.RUNNING, changed_at=datetime.now(UTC)
    )


def confirmed(order_id: str, *, final: bool) -> ProductionConfirmation:
    return ProductionConfirmation.model_validate(confirmation(order_id, final=final))


async def apply(store: Store, order_id: str, correlation_id: str) -> None:
    """Settle a down message that applied ``order_id``, as the downlink does."""
    await store.inbox.receive("d1", "t", b"{}", received_at=1.0, seq=None)
    applied = OrderState(
        order_id,
        1,
        "line-1",
        "Released",
        b"{}",
        1.0,
        correlation_id=correlation_id,
        message_id="d1",
    )
    await store.inbox.settle(1, InboxStatus.APPLIED, orders=[applied])


async def test_events_carry_the_stores_correlation_and_each_confirmation_is_counted_once(
    tmp_path: Path,
) -> None:
    counted: list[bool] = []
    async with await Store.open(tmp_path / "store.db", max_size_bytes=1 << 24) as store:
        await apply(store, "JO-1", "plan-X")
        business = BusinessWriter(store, TOPICS, Sequencer({}), asyncio.Event())
        reporter = PlantEventReporter(business, store.inbox, on_confirmed=counted.append)
        partial = confirmed("JO-1", final=False)
        plant = ReportingPlant(status("JO-1"), partial, partial, confirmed("JO-9", final=True))

        await reporter.report("jobcontrol", plant)

        claimed = await store.outbox.begin(100)
    reported = [json.loads(row.record.payload) for row in claimed]

    assert [(m["type"], m["stream"], m["correlation_id"]) for m in reported] == [
        ("order.status", "order/JO-1", "plan-X"),
        ("production.confirmation", "order/JO-1", "plan-X"),
        ("production.confirmation", "order/JO-9", None),  # never applied here: no schedule
    ]
    assert counted == [False, True]


async def test_a_confirmation_the_plant_repeats_after_a_restart_is_not_sent_again(
    tmp_path: Path,
) -> None:
    """The driver repeats each order's latest response after a reconnect; read again later,
    a response without an end time carries a later ``actual_end``: the same report."""
    path = tmp_path / "store.db"
    first = confirmed("JO-1", final=False)
    read_again = first.model_copy(update={"actual_end": datetime.now(UTC)})
    counted: list[bool] = []
    for event in (first, read_again):  # one agent run each, on the same store
        async with await Store.open(path, max_size_bytes=1 << 24) as store:
            sequencer = Sequencer(await store.outbox.last_sequences())
            business = BusinessWriter(store, TOPICS, sequencer, asyncio.Event())
            reporter = PlantEventReporter(business, store.inbox, on_confirmed=counted.append)
            await reporter.report("jobcontrol", ReportingPlant(event))
    async with await Store.open(path, max_size_bytes=1 << 24) as store:
        claimed = await store.outbox.begin(100)

    assert read_again.actual_end != first.actual_end
    assert [json.loads(row.record.payload)["seq"] for row in claimed] == [1]
    assert counted == [False]

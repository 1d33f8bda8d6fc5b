"""The simulated plant runs the job orders it receives (a unit every 20 ms here), and the sink
reports their states and confirmations."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.business import BusinessWriter
from plantsync.agent.downlink import Downlink
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.reporting import PlantEventReporter
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.store import Store
from plantsync.contracts import Topics
from plantsync.contracts.orders import JobOrderState, OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import Quantity, RequestState
from plantsync.drivers.jobcontrol import JobControlSink
from plantsync.sim.plant import SimulatedPlant
from tests.contracts.examples import SITE, down_message, encoded
from tests.fixtures.opcua import free_port
from tests.jobcontrol.support import WAIT, change, next_event, order, revised

LONG = "1000"
"""An order quantity that keeps a machine busy for the whole test."""


@pytest.fixture
async def running_plant() -> AsyncIterator[SimulatedPlant]:
    async with SimulatedPlant(port=free_port(), tick=None, job_seconds_per_unit=0.02) as plant:
        yield plant


def in_state(order_id: str, state: JobOrderState) -> Callable[[OrderStatus], bool]:
    return lambda status: status.order_id == order_id and status.state is state


async def test_an_order_runs_to_ended_with_a_final_confirmation_in_decimal_quantities(
    running_plant: SimulatedPlant,
) -> None:
    async with JobControlSink(running_plant.jobcontrol_config(publishing_interval="50ms")) as sink:
        await sink.apply(change("schedule.release", order("JO-1", quantity="10.5")))
        events = sink.events()
        confirmations = [
            await next_event(events, ProductionConfirmation, lambda c: c.order_id == "JO-1")
        ]
        while not confirmations[-1].final:
            confirmations.append(await next_event(events, ProductionConfirmation, bool))
        ended = await next_event(events, OrderStatus, in_state("JO-1", JobOrderState.ENDED))

    final = confirmations[-1]
    assert final.good_quantity == Quantity(value=Decimal("10.5"), unit="kg")
    assert final.scrap_quantity == Quantity(value=Decimal("1"), unit="kg")
    assert (final.equipment_id, final.material_lot, final.revision) == ("press-1", "LOT-JO-1", 1)
    assert final.actual_start <= final.actual_end
    assert len(confirmations) > 1, "partial confirmations while it ran"
    goods = [c.good_quantity.value for c in confirmations]
    assert goods == sorted(goods), "confirmations are cumulative"
    assert not any(c.final for c in confirmations[:-1])
    assert len({c.confirmation_id for c in confirmations}) == len(confirmations)
    assert ended.changed_at >= final.actual_start


async def test_an_order_waits_while_its_machine_runs_another(
    running_plant: SimulatedPlant,
) -> None:
    async with JobControlSink(running_plant.jobcontrol_config(publishing_interval="50ms")) as sink:
        events = sink.events()
        await sink.apply(change("schedule.release", order("JO-A", quantity=LONG)))
        await next_event(events, OrderStatus, in_state("JO-A", JobOrderState.RUNNING))
        await sink.apply(change("schedule.release", order("JO-B", priority=1)))
        await sink.apply(
            change("schedule.release", order("JO-C", quantity=LONG, equipment_id="lathe-1"))
        )
        await next_event(events, OrderStatus, in_state("JO-C", JobOrderState.RUNNING))
        states = {key: entry.state for key, entry in (await sink.job_orders()).items()}

    assert states == {
        "JO-A": JobOrderState.RUNNING,
        "JO-B": JobOrderState.ALLOWED_TO_START,
        "JO-C": JobOrderState.RUNNING,
    }


async def test_a_hold_pauses_a_running_order_and_a_cancel_aborts_it(
    running_plant: SimulatedPlant,
) -> None:
    first = order("JO-1", quantity=LONG)
    hold = revised(first, request_state=RequestState.HELD)
    cancel = revised(hold, request_state=RequestState.CANCELLED)
    async with JobControlSink(running_plant.jobcontrol_config(publishing_interval="50ms")) as sink:
        events = sink.events()
        await sink.apply(change("schedule.release", first))
        await next_event(events, ProductionConfirmation, lambda c: c.order_id == "JO-1")
        paused = await sink.apply(change("order.hold", hold))
        await next_event(events, OrderStatus, in_state("JO-1", JobOrderState.INTERRUPTED))
        aborted = await sink.apply(change("order.cancel", cancel))
        again = await sink.apply(change("order.cancel", cancel))
        # The final confirmation comes first: the response changed before the state did.
        last = await next_event(events, ProductionConfirmation, lambda c: c.final)
        await next_event(events, OrderStatus, in_state("JO-1", JobOrderState.ABORTED))

    assert [paused.applied, aborted.applied, again.applied] == [True, True, True]
    assert Decimal(0) < last.good_quantity.value < Decimal(LONG)


async def test_a_revision_of_a_running_order_is_refused_as_invalid_job_order_status(
    running_plant: SimulatedPlant,
) -> None:
    first = order("JO-1", quantity=LONG)
    second = revised(first, quantity=Quantity.model_validate({"value": "5", "unit": "kg"}))
    async with JobControlSink(running_plant.jobcontrol_config(publishing_interval="50ms")) as sink:
        await sink.apply(change("schedule.release", first))
        await next_event(sink.events(), OrderStatus, in_state("JO-1", JobOrderState.RUNNING))
        verdict = await sink.apply(change("schedule.revision", second))

    assert not verdict.applied
    assert verdict.reason == "jobcontrol: InvalidJobOrderStatus"


# ---- the agent around it: a confirmation names the schedule it answers, across a restart ------

TOPICS = Topics("plantsync/v1", SITE)
STORE_BYTES = 1 << 24


async def test_a_confirmation_after_a_restart_carries_the_correlation_of_the_schedule(
    running_plant: SimulatedPlant, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    config = running_plant.jobcontrol_config(publishing_interval="50ms")
    release = down_message(
        "schedule.release",
        correlation_id="plan-X",
        payload={"orders": [order("JO-1", quantity="5").model_dump(mode="json")]},
    )
    async with (
        await Store.open(path, max_size_bytes=STORE_BYTES) as store,
        JobControlSink(config) as sink,
    ):
        await _apply(store, sink, encoded(release))

    # The agent restarted: the plant repeats JO-1's latest confirmation to a fresh session.
    confirmed: list[bool] = []
    async with await Store.open(path, max_size_bytes=STORE_BYTES) as store:
        reporter = PlantEventReporter(
            BusinessWriter(
                store,
                TOPICS,
                Sequencer(await store.outbox.last_sequences()),
                asyncio.Event(),
            ),
            store.inbox,
            on_confirmed=confirmed.append,
        )
        async with JobControlSink(config) as sink:
            reporting = asyncio.create_task(reporter.report(sink.name, sink))
            try:
                async with asyncio.timeout(WAIT):
                    while True not in confirmed:  # noqa: ASYNC110 - the callback is the signal
                        await asyncio.sleep(0.02)
            finally:
                reporting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporting
        reported = [m for m in await _business(store) if m["stream"] == "order/JO-1"]

    confirmations = [m for m in reported if m["type"] == "production.confirmation"]
    assert confirmations
    assert confirmations[-1]["payload"]["final"] is True
    assert {m["correlation_id"] for m in reported} == {"plan-X"}, "status and confirmations"


async def _apply(store: Store, sink: JobControlSink, payload: bytes) -> None:
    """Receive one down message and let the downlink apply it through ``sink``."""
    downlink = Downlink(
        store,
        TOPICS,
        Sequencer(await store.outbox.last_sequences()),
        policy=SchedulePolicy(timedelta(0), Decimal(10**6)),
        outbox_changed=asyncio.Event(),
    )
    await downlink.receive(TOPICS.down_schedule, payload)
    running = asyncio.create_task(downlink.run(sink, LinkHealth("plant")))
    try:
        async with asyncio.timeout(WAIT):
            while downlink.counters.applied < 1:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _business(store: Store) -> list[dict[str, Any]]:
    """Every message in the outbox, decoded, in the order HQ gets them."""
    claimed = await store.outbox.begin(10_000)
    await store.outbox.nack([row.row_id for row in claimed])
    return [json.loads(row.record.payload) for row in claimed]

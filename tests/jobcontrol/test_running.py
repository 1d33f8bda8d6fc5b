"""The simulated plant runs the job orders it receives (a unit every 20 ms here), and the sink
reports their states and confirmations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import pytest

from plantsync.contracts.orders import JobOrderState, OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import Quantity, RequestState
from plantsync.drivers.jobcontrol import JobControlSink
from plantsync.sim.plant import SimulatedPlant
from tests.fixtures.opcua import free_port
from tests.jobcontrol.support import change, next_event, order, revised

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

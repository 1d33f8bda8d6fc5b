"""JobControlSink against the simulated plant's Job Control, with orders that never start
running on their own: what each schedule change does to the job order on the server."""

from __future__ import annotations

from datetime import timedelta

import pytest

from plantsync.contracts.orders import JobOrderState, OrderStatus
from plantsync.contracts.schedule import Quantity, RequestState
from plantsync.drivers.base import PlantEvents
from plantsync.drivers.jobcontrol import JobControlSink
from plantsync.drivers.jobcontrol.isa95 import ISA95JobOrderAndStateDataType
from plantsync.errors import LinkMisconfigured, SourceUnavailable
from plantsync.sim.plant import SimulatedPlant
from tests.fixtures.opcua import free_port
from tests.jobcontrol.support import change, drain, next_event, order, revised


async def stored(sink: JobControlSink, order_id: str) -> ISA95JobOrderAndStateDataType:
    return (await sink.job_orders())[order_id]


async def test_a_released_order_is_stored_and_reported_allowed_to_start(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        verdict = await sink.apply(change("schedule.release", order("JO-1")))
        status = await next_event(
            sink.events(), OrderStatus, lambda s: s.state is JobOrderState.ALLOWED_TO_START
        )
        entry = await stored(sink, "JO-1")

    assert verdict.applied
    assert jobcontrol_plant.job_control is not None
    assert jobcontrol_plant.job_control.state("JO-1") is JobOrderState.ALLOWED_TO_START
    assert (status.order_id, status.revision, status.equipment_id) == ("JO-1", 1, "press-1")
    assert status.request_state is RequestState.RELEASED
    assert entry.JobOrder.produced is not None
    assert (entry.JobOrder.produced.Quantity, entry.JobOrder.Priority) == ("10.5", 5)
    assert isinstance(sink, PlantEvents)


async def test_the_same_change_twice_takes_effect_once(jobcontrol_plant: SimulatedPlant) -> None:
    first = order("JO-1")
    hold = revised(first, request_state=RequestState.HELD)
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        # A second Store or RevokeStart would be refused: applied twice means called once.
        verdicts = [await sink.apply(change("schedule.release", first)) for _ in "ab"]
        verdicts += [await sink.apply(change("order.hold", hold)) for _ in "ab"]
        job_orders = await sink.job_orders()

    assert all(verdict.applied for verdict in verdicts)
    assert list(job_orders) == ["JO-1"]
    assert job_orders["JO-1"].state is JobOrderState.NOT_ALLOWED_TO_START
    assert job_orders["JO-1"].JobOrder.revision == 2


async def test_a_revision_updates_the_stored_order(jobcontrol_plant: SimulatedPlant) -> None:
    first = order("JO-1")
    second = revised(first, quantity=Quantity.model_validate({"value": "20", "unit": "kg"}))
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.release", first))
        verdict = await sink.apply(change("schedule.revision", second))
        entry = await stored(sink, "JO-1")

    assert verdict.applied
    assert entry.JobOrder.revision == 2
    assert entry.JobOrder.produced is not None
    assert entry.JobOrder.produced.Quantity == "20"
    assert entry.state is JobOrderState.ALLOWED_TO_START


async def test_a_hold_revokes_the_start_and_its_release_allows_it_again(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    first = order("JO-1")
    hold = revised(first, request_state=RequestState.HELD)
    release = revised(hold, request_state=RequestState.RELEASED)
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.release", first))
        await sink.apply(change("order.hold", hold))
        held = await stored(sink, "JO-1")
        await sink.apply(change("order.hold-release", release))
        allowed = await stored(sink, "JO-1")

    assert (held.state, held.JobOrder.parameter("RequestState")) == (
        JobOrderState.NOT_ALLOWED_TO_START,
        "Held",
    )
    assert (allowed.state, allowed.JobOrder.revision) == (JobOrderState.ALLOWED_TO_START, 3)


async def test_a_cancel_removes_an_order_that_has_not_started(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    first = order("JO-1")
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.release", first))
        verdict = await sink.apply(
            change("order.cancel", revised(first, request_state=RequestState.CANCELLED))
        )
        job_orders = await sink.job_orders()

    assert verdict.applied
    assert job_orders == {}


async def test_a_cancel_of_an_unknown_order_is_refused_with_the_return_status_by_name(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    cancel = order("JO-404", revision=2, request_state=RequestState.CANCELLED)
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        verdict = await sink.apply(change("order.cancel", cancel))

    assert not verdict.applied
    assert verdict.reason == "jobcontrol: UnknownJobOrderId"


async def test_a_new_order_that_is_held_is_stored_but_not_allowed_to_start(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    held = order("JO-1", request_state=RequestState.HELD)
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.snapshot", held))
        entry = await stored(sink, "JO-1")

    assert entry.state is JobOrderState.NOT_ALLOWED_TO_START


async def test_a_stopped_server_makes_apply_raise_source_unavailable(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    config = jobcontrol_plant.jobcontrol_config(request_timeout="2s")
    async with JobControlSink(config) as sink:
        await jobcontrol_plant.stop()
        with pytest.raises(SourceUnavailable):
            await sink.apply(change("schedule.release", order("JO-1")))


async def test_events_end_with_source_unavailable_when_the_server_stops(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.release", order("JO-1")))
        events = sink.events()
        await next_event(events, OrderStatus, lambda s: s.order_id == "JO-1")
        await jobcontrol_plant.stop()
        with pytest.raises(SourceUnavailable):
            await drain(events)


async def test_connecting_to_a_server_that_is_not_there_raises_source_unavailable() -> None:
    plant = SimulatedPlant(port=free_port(), tick=None)  # never started
    with pytest.raises(SourceUnavailable):
        async with JobControlSink(plant.jobcontrol_config(request_timeout="2s")):
            pass


async def test_a_node_that_is_no_job_order_receiver_is_link_misconfigured(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    config = jobcontrol_plant.jobcontrol_config(
        job_order_receiver=jobcontrol_plant.node_id("press-1", "speed")
    )
    with pytest.raises(LinkMisconfigured, match="no JobOrderList"):
        async with JobControlSink(config):
            pass


def test_the_config_rejects_a_username_without_a_password() -> None:
    plant = SimulatedPlant(port=4840, tick=None)
    with pytest.raises(ValueError, match="together"):
        plant.jobcontrol_config(username="operator")
    assert plant.jobcontrol_config().publishing_interval == timedelta(milliseconds=500)

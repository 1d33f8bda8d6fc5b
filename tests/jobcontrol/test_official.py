"""The sink against the official OPC 10031-4 v2 nodeset, as a third-party client sees it: the
structures on the wire, discovery by type, optional methods that a server leaves out, and a
server restarting between two deliveries."""

from __future__ import annotations

from typing import Any

import pytest
from asyncua import ua
from asyncua.client.client import Client

from plantsync.contracts.orders import JobOrderState
from plantsync.contracts.schedule import Quantity, RequestState
from plantsync.drivers.jobcontrol import JobControlSink, codec
from plantsync.errors import LinkMisconfigured, SourceUnavailable
from plantsync.sim.plant import SimulatedPlant
from tests.fixtures.opcua import free_port
from tests.jobcontrol.support import change, order, revised


async def job_order_list(plant: SimulatedPlant) -> list[Any]:
    """JobOrderList read by a plain asyncua client, with the server's type definitions."""
    async with Client(plant.endpoint, timeout=5) as client:
        await client.load_data_type_definitions()
        ns = await client.get_namespace_index(codec.NAMESPACE_URI)
        receiver = client.get_node(plant.receiver_node_id())
        type_definition = await receiver.read_type_definition()
        assert type_definition == ua.NodeId(ua.Int32(codec.RECEIVER_TYPE), ua.Int16(ns))
        value: list[Any] = await client.get_node(
            f"{plant.receiver_node_id()}.JobOrderList"
        ).read_value()
        return value


async def test_a_release_stores_an_isa95_job_order_structure_with_typed_fields(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    async with JobControlSink(jobcontrol_plant.jobcontrol_config()) as sink:
        verdict = await sink.apply(change("schedule.release", order("JO-1", quantity="10.5")))
    [entry] = await job_order_list(jobcontrol_plant)

    assert verdict.applied
    assert type(entry).__name__ == "ISA95JobOrderAndStateDataType"
    job_order = entry.JobOrder
    assert (job_order.JobOrderID, job_order.Priority) == ("JO-1", 5)
    assert [w.ID for w in job_order.WorkMasterID] == ["P-100"]
    assert job_order.StartTime < job_order.EndTime
    parameters = {p.ID: p.Value for p in job_order.JobOrderParameters}
    assert parameters["Revision"] == ua.Variant(1, ua.VariantType.Int32)
    assert parameters["RequestState"].Value == "Released"
    [product] = job_order.MaterialRequirements
    assert (product.MaterialDefinitionID, product.MaterialUse, product.Quantity) == (
        "P-100",
        "Produced",
        "10.5",
    )
    assert product.EngineeringUnits.UnitId == codec.unit_id("KGM")
    assert product.EngineeringUnits.NamespaceUri == codec.UNECE_URI
    assert [(e.ID, e.EquipmentUse) for e in job_order.EquipmentRequirements] == [
        ("press-1", "Production")
    ]
    [state] = entry.State
    assert (state.StateText.Text, state.StateNumber) == ("AllowedToStart", 2)


async def test_store_and_start_delivers_a_release_in_one_call(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    config = jobcontrol_plant.jobcontrol_config(release_method="StoreAndStart")
    async with JobControlSink(config) as sink:
        verdict = await sink.apply(change("schedule.release", order("JO-1")))
        entry = (await sink.job_orders())["JO-1"]

    assert verdict.applied
    assert entry.state is JobOrderState.ALLOWED_TO_START


async def test_a_configured_receiver_overrides_discovery(jobcontrol_plant: SimulatedPlant) -> None:
    config = jobcontrol_plant.jobcontrol_config(
        job_order_receiver=jobcontrol_plant.receiver_node_id(),
        job_response_provider=jobcontrol_plant.receiver_node_id("JobResponseProvider"),
    )
    async with JobControlSink(config) as sink:
        assert sink.nodes is not None
        assert sink.nodes.receiver.to_string() == jobcontrol_plant.receiver_node_id()
        assert set(sink.nodes.methods) >= {"Store", "StoreAndStart", "Update", "RevokeStart"}
        assert sink.nodes.job_order_response_list is not None


async def test_a_server_without_job_control_is_link_misconfigured() -> None:
    async with SimulatedPlant(port=free_port(), tick=None, job_control=False) as plant:
        with pytest.raises(LinkMisconfigured, match="ISA95-JOBCONTROL_V2"):
            async with JobControlSink(plant.jobcontrol_config()):
                pass


# ---- a receiver that offers only Store ---------------------------------------------------------


async def test_a_store_only_server_takes_a_release_which_waits_for_a_local_start(
    store_only_plant: SimulatedPlant,
) -> None:
    config = store_only_plant.jobcontrol_config(release_method="StoreAndStart")
    async with JobControlSink(config) as sink:
        assert sink.nodes is not None
        assert set(sink.nodes.methods) == {"Store"}
        verdict = await sink.apply(change("schedule.release", order("JO-1")))
        entry = (await sink.job_orders())["JO-1"]

    assert verdict.applied
    assert entry.state is JobOrderState.NOT_ALLOWED_TO_START


async def test_a_store_only_server_refuses_a_revision_and_a_cancel_naming_the_method(
    store_only_plant: SimulatedPlant,
) -> None:
    first = order("JO-1")
    second = revised(first, quantity=Quantity.model_validate({"value": "20", "unit": "kg"}))
    cancel = revised(second, request_state=RequestState.CANCELLED)
    async with JobControlSink(store_only_plant.jobcontrol_config()) as sink:
        await sink.apply(change("schedule.release", first))
        revision = await sink.apply(change("schedule.revision", second))
        cancelled = await sink.apply(change("order.cancel", cancel))
        entry = (await sink.job_orders())["JO-1"]

    assert (revision.applied, revision.reason) == (
        False,
        "jobcontrol: the job order receiver offers no Update method",
    )
    assert (cancelled.applied, cancelled.reason) == (
        False,
        "jobcontrol: the job order receiver offers no Cancel method",
    )
    assert entry.JobOrder.revision == 1, "nothing was called"


async def test_without_update_a_revision_replaces_the_job_order_by_cancel_and_store() -> None:
    methods = {"Store", "Cancel", "Start"}
    first = order("JO-1")
    second = revised(first, quantity=Quantity.model_validate({"value": "20", "unit": "kg"}))
    async with (
        SimulatedPlant(
            port=free_port(), tick=None, job_seconds_per_unit=3600, job_methods=methods
        ) as plant,
        JobControlSink(plant.jobcontrol_config()) as sink,
    ):
        await sink.apply(change("schedule.release", first))
        verdict = await sink.apply(change("schedule.revision", second))
        entry = (await sink.job_orders())["JO-1"]

    assert verdict.applied
    assert entry.JobOrder.revision == 2
    assert entry.JobOrder.produced is not None
    assert entry.JobOrder.produced.Quantity == "20"
    assert entry.state is JobOrderState.ALLOWED_TO_START


# ---- a server restarting mid-delivery ----------------------------------------------------------


async def test_a_change_retried_after_a_server_restart_takes_effect_once(
    jobcontrol_plant: SimulatedPlant,
) -> None:
    first = order("JO-1")
    hold = revised(first, request_state=RequestState.HELD)
    config = jobcontrol_plant.jobcontrol_config(request_timeout="2s")
    async with JobControlSink(config) as sink:
        await sink.apply(change("schedule.release", first))
        await jobcontrol_plant.restart()  # the session is gone; the job orders are kept
        with pytest.raises(SourceUnavailable):
            await sink.apply(change("order.hold", hold))
    async with JobControlSink(config) as sink:  # what the supervisor does next
        verdicts = [await sink.apply(change("order.hold", hold)) for _ in "ab"]
        job_orders = await sink.job_orders()

    assert all(verdict.applied for verdict in verdicts)
    assert list(job_orders) == ["JO-1"]
    assert job_orders["JO-1"].state is JobOrderState.NOT_ALLOWED_TO_START
    assert job_orders["JO-1"].JobOrder.revision == 2

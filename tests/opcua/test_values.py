"""Type-aware values against a real asyncua server: units and EURange read once per
connection and carried on snapshots; arrays, structures and LocalizedText as JSON."""

from __future__ import annotations

from pathlib import Path

from asyncua import ua
from asyncua.common.structures104 import new_struct, new_struct_field

from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.memory import MemoryOutbox
from plantsync.config.plant import MachineConfig, TagConfig
from plantsync.contracts import MachineStateMessage, Topics
from plantsync.contracts.machine import Range
from plantsync.drivers.opcua import OpcUaSource
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from tests.opcua.support import collect_until_complete


async def test_units_and_range_are_read_once_and_ride_on_snapshots_only(
    opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    tags = [
        TagConfig(name=name, node_id=opcua_plant.node_id("press-1", name))
        for name in ("temperature", "state")
    ]
    config = opcua_plant.server_config(machines=[MachineConfig(id="press-1", tags=tags)])
    outbox = MemoryOutbox(max_size_bytes=10_000_000)
    pipeline = Pipeline(outbox, Topics("plantsync/v1", "plant-01"), Sequencer({}))
    async with OpcUaSource(config) as source:
        metadata = source.tag_metadata()
        batch = list((await collect_until_complete(source.readings(), 2)).values())
    pipeline.describe(metadata)
    await pipeline.submit("opcua:plant", batch)
    await pipeline.request_snapshot()
    await pipeline.close()
    await pipeline.run()

    temperature = metadata[("press-1", "temperature")]
    assert (temperature.units, temperature.data_type) == ("°C", "Double")
    assert temperature.unit_id == int.from_bytes(b"CEL", "big")
    assert temperature.eu_range == Range(low=0.0, high=200.0)
    assert metadata[("press-1", "state")].units is None  # a String has a type, no unit
    change, snapshot = [
        MachineStateMessage.model_validate_json(claimed.record.payload)
        for claimed in await outbox.begin(10)
    ]
    assert (change.payload.kind, change.payload.metadata) == ("change", None)
    assert snapshot.payload.kind == "snapshot"
    assert snapshot.payload.metadata is not None
    assert snapshot.payload.metadata["temperature"].units == "°C"


async def test_arrays_structures_and_localized_text_arrive_as_json(
    opcua_plant: SimulatedPlant,
) -> None:
    server = opcua_plant.server
    index = await server.get_namespace_index(NAMESPACE)
    recipe_type, _ = await new_struct(
        server,
        index,
        "PlantsyncRecipe",
        [
            new_struct_field("name", ua.VariantType.String),
            new_struct_field("setpoints", ua.VariantType.Double, array=True),
        ],
    )
    await server.load_data_type_definitions()
    recipe = ua.PlantsyncRecipe(name="R-7", setpoints=[180.0, 2.5])  # type: ignore[attr-defined]
    folder = await server.nodes.objects.add_object(f"ns={index};s=oven-1", f"{index}:oven-1")
    await folder.add_variable(
        f"ns={index};s=oven-1.recipe", f"{index}:recipe", recipe, datatype=recipe_type.nodeid
    )
    await folder.add_variable(
        f"ns={index};s=oven-1.profile",
        f"{index}:profile",
        ua.Variant([1.0, 2.0, 3.0], ua.VariantType.Double),
    )
    await folder.add_variable(
        f"ns={index};s=oven-1.mode", f"{index}:mode", ua.LocalizedText("Heizen", "de-DE")
    )
    tags = [
        TagConfig(name=name, node_id=f"ns={index};s=oven-1.{name}")
        for name in ("recipe", "profile", "mode")
    ]
    config = opcua_plant.server_config(machines=[MachineConfig(id="oven-1", tags=tags)])
    async with OpcUaSource(config) as source:
        seen = await collect_until_complete(source.readings(), 3)
        metadata = source.tag_metadata()

    assert seen[("oven-1", "recipe")].value == {"name": "R-7", "setpoints": [180.0, 2.5]}
    assert seen[("oven-1", "profile")].value == [1.0, 2.0, 3.0]
    assert seen[("oven-1", "mode")].value == "Heizen"
    assert metadata[("oven-1", "recipe")].data_type == "PlantsyncRecipe"
    assert metadata[("oven-1", "mode")].data_type == "LocalizedText"

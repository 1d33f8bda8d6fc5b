"""OpcUaSource against the simulated plant: a real asyncua server on a loopback port."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from plantsync.config.plant import Deadband, MachineConfig, OpcUaServerConfig, TagConfig
from plantsync.contracts.machine import ItemState, Quality
from plantsync.drivers.opcua import OpcUaSource
from plantsync.errors import LinkMisconfigured, SourceUnavailable
from plantsync.sim.plant import TAGS, SimulatedPlant
from tests.fixtures.opcua import free_port
from tests.opcua.support import WAIT, collect_until_complete, drain, next_reading

UNCERTAIN_LAST_USABLE_VALUE = 0x40900000


def one_machine(plant: SimulatedPlant, *tags: TagConfig) -> OpcUaServerConfig:
    """A config reading only the given tags of press-1."""
    return plant.server_config(machines=[MachineConfig(id="press-1", tags=list(tags))])


async def test_the_first_batches_carry_the_initial_value_of_every_configured_tag(
    opcua_plant: SimulatedPlant,
) -> None:
    config = opcua_plant.server_config()
    async with OpcUaSource(config) as source:
        seen = await collect_until_complete(
            source.readings(), len(opcua_plant.machines) * len(TAGS)
        )

    assert set(seen) == {(machine, tag) for machine in opcua_plant.machines for tag in TAGS}
    assert seen[("lathe-1", "state")].value == ItemState.NOT_EXECUTING.value
    assert seen[("press-2", "good_count")].value == 0
    assert all(reading.quality is Quality.GOOD for reading in seen.values())


async def test_a_written_value_arrives_with_its_machine_tag_quality_and_source_time(
    opcua_plant: SimulatedPlant,
) -> None:
    async with OpcUaSource(opcua_plant.server_config()) as source:
        batches = source.readings()
        await collect_until_complete(batches, len(opcua_plant.machines) * len(TAGS))
        before = datetime.now(UTC)
        await opcua_plant.set_value("press-2", "speed", 42.5)
        reading = await next_reading(batches, "press-2", "speed")

    assert reading.value == 42.5
    assert reading.quality is Quality.GOOD
    assert reading.status_code == 0
    assert reading.source_time is not None
    assert reading.source_time.tzinfo is UTC
    assert before - timedelta(seconds=1) <= reading.source_time <= datetime.now(UTC)


async def test_an_uncertain_status_arrives_as_uncertain_quality_with_the_raw_code(
    opcua_plant: SimulatedPlant,
) -> None:
    config = one_machine(
        opcua_plant, TagConfig(name="temp", node_id=opcua_plant.node_id("press-1", "temperature"))
    )
    async with OpcUaSource(config) as source:
        batches = source.readings()
        await next_reading(batches, "press-1", "temp")
        await opcua_plant.set_value(
            "press-1", "temperature", 31.0, status_code=UNCERTAIN_LAST_USABLE_VALUE
        )
        reading = await next_reading(batches, "press-1", "temp")

    assert (reading.value, reading.quality) == (31.0, Quality.UNCERTAIN)
    assert reading.status_code == UNCERTAIN_LAST_USABLE_VALUE


async def test_a_value_the_server_flags_as_overflowed_is_counted_as_lost(
    opcua_plant: SimulatedPlant,
) -> None:
    """The Overflow bit (InfoType DataValue, 0x480) says the server's queue discarded values."""
    config = one_machine(
        opcua_plant, TagConfig(name="temp", node_id=opcua_plant.node_id("press-1", "temperature"))
    )
    async with OpcUaSource(config) as source:
        batches = source.readings()
        await next_reading(batches, "press-1", "temp")
        before = source.counters()["overflows"]
        await opcua_plant.set_value("press-1", "temperature", 32.0, status_code=0x0480)
        reading = await next_reading(batches, "press-1", "temp")
        after = source.counters()

    assert reading.value == 32.0
    assert (before, after["overflows"], after["dropped"]) == (0, 1, 0)


async def test_browse_paths_resolve_to_the_configured_variables(
    opcua_plant: SimulatedPlant,
) -> None:
    await opcua_plant.set_value("press-1", "good_count", 17)
    config = one_machine(
        opcua_plant,
        TagConfig(name="parts", browse_path="2:press-1/2:good_count"),
        TagConfig(name="state", browse_path="2:press-1/2:state"),
    )
    async with OpcUaSource(config) as source:
        seen = await collect_until_complete(source.readings(), 2)

    assert seen[("press-1", "parts")].value == 17
    assert seen[("press-1", "state")].value == ItemState.NOT_EXECUTING.value


async def test_every_item_is_created_when_calls_are_capped_at_two_items(
    opcua_plant: SimulatedPlant,
) -> None:
    config = opcua_plant.server_config(monitored_item_batch=2)
    async with OpcUaSource(config) as source:
        seen = await collect_until_complete(
            source.readings(), len(opcua_plant.machines) * len(TAGS)
        )

    assert len(seen) == 15


async def test_an_absolute_deadband_suppresses_a_small_change_and_passes_a_large_one(
    opcua_plant: SimulatedPlant,
) -> None:
    node_id = opcua_plant.node_id("press-1", "speed")
    config = one_machine(
        opcua_plant,
        TagConfig(name="speed", node_id=node_id, deadband=Deadband(kind="absolute", value=5.0)),
    )
    async with OpcUaSource(config) as source:
        batches = source.readings()
        assert (await next_reading(batches, "press-1", "speed")).value == 0.0
        await opcua_plant.set_value("press-1", "speed", 1.0)
        await asyncio.sleep(0.3)  # three publishing intervals: the small change had its chance
        await opcua_plant.set_value("press-1", "speed", 10.0)
        reading = await next_reading(batches, "press-1", "speed")

    assert reading.value == 10.0


async def test_an_unknown_node_id_is_refused_as_misconfigured_naming_tag_and_node(
    opcua_plant: SimulatedPlant,
) -> None:
    config = one_machine(
        opcua_plant,
        TagConfig(name="speed", node_id=opcua_plant.node_id("press-1", "speed")),
        TagConfig(name="ghost", node_id="ns=2;s=press-1.no-such-tag"),
    )
    with pytest.raises(LinkMisconfigured, match=r"press-1\.ghost.*ns=2;s=press-1\.no-such-tag"):
        async with asyncio.timeout(WAIT), OpcUaSource(config):
            pass


async def test_an_unknown_browse_path_is_refused_as_misconfigured(
    opcua_plant: SimulatedPlant,
) -> None:
    config = one_machine(opcua_plant, TagConfig(name="ghost", browse_path="2:press-1/2:nothing"))
    with pytest.raises(LinkMisconfigured, match=r"press-1\.ghost.*2:press-1/2:nothing"):
        async with asyncio.timeout(WAIT), OpcUaSource(config):
            pass


async def test_readings_raise_source_unavailable_soon_after_the_server_stops(
    opcua_plant: SimulatedPlant,
) -> None:
    async with OpcUaSource(opcua_plant.server_config()) as source:
        batches = source.readings()
        await anext(batches)
        await opcua_plant.stop()
        started = time.monotonic()
        with pytest.raises(SourceUnavailable):
            await drain(batches)
        detected_after = time.monotonic() - started
        closing = time.monotonic()
    assert detected_after < 2.0
    assert time.monotonic() - closing < 2.0


async def test_a_new_source_reads_again_after_the_plant_restarts(
    opcua_plant: SimulatedPlant,
) -> None:
    config = opcua_plant.server_config()
    async with OpcUaSource(config) as source:
        await anext(source.readings())
    await opcua_plant.restart()

    async with OpcUaSource(config) as source:
        batches = source.readings()
        await anext(batches)
        await opcua_plant.set_value("lathe-1", "scrap_count", 3)
        reading = await next_reading(batches, "lathe-1", "scrap_count")

    assert reading.value == 3


async def test_connecting_to_a_closed_port_fails_fast_with_source_unavailable() -> None:
    plant = SimulatedPlant(port=free_port(), tick=None)  # never started: nothing listens
    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="connecting"):
        async with asyncio.timeout(WAIT), OpcUaSource(plant.server_config()):
            pass
    assert time.monotonic() - started < 1.0


async def test_a_link_that_sends_nothing_for_the_stall_timeout_is_unavailable(
    opcua_plant: SimulatedPlant,
) -> None:
    # Keep-alives every 3 s (100 ms x 30), but a stall timeout of 1 s: nothing arrives in time.
    config = opcua_plant.server_config(
        keepalive_count=30, lifetime_count=90, stall_timeout=timedelta(seconds=1)
    )
    async with OpcUaSource(config) as source:
        batches = source.readings()
        await collect_until_complete(batches, len(opcua_plant.machines) * len(TAGS))
        started = time.monotonic()
        with pytest.raises(SourceUnavailable, match="no data change or keep-alive"):
            async with asyncio.timeout(WAIT):
                await anext(batches)
    assert 0.5 < time.monotonic() - started < 2.0


async def test_keep_alives_hold_a_quiet_link_open_past_the_stall_timeout(
    opcua_plant: SimulatedPlant,
) -> None:
    # Keep-alives every 300 ms (100 ms x 3) against a stall timeout of 1 s.
    config = opcua_plant.server_config(
        keepalive_count=3, lifetime_count=9, stall_timeout=timedelta(seconds=1)
    )
    async with OpcUaSource(config) as source:
        batches = source.readings()
        await collect_until_complete(batches, len(opcua_plant.machines) * len(TAGS))
        # Not asyncio.timeout around anext: cancelling anext would close the generator.
        pending = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(2.5)
        assert not pending.done()
        await opcua_plant.set_value("press-1", "speed", 7.0)
        async with asyncio.timeout(WAIT):
            batch = await pending
    assert [(reading.tag, reading.value) for reading in batch] == [("speed", 7.0)]


async def test_a_consumer_that_falls_behind_loses_the_oldest_batches_and_counts_them(
    opcua_plant: SimulatedPlant,
) -> None:
    config = one_machine(
        opcua_plant, TagConfig(name="speed", node_id=opcua_plant.node_id("press-1", "speed"))
    )
    async with OpcUaSource(config, queue_readings=2) as source:
        for speed in range(1, 6):
            await opcua_plant.set_value("press-1", "speed", float(speed))
            await asyncio.sleep(0.25)  # one publish response per value
        batches = source.readings()
        values = [
            reading.value
            for batch in [await anext(batches), await anext(batches)]
            for reading in batch
        ]

    assert values[-1] == 5.0
    assert source.dropped >= 3

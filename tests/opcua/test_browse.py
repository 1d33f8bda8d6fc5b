"""``plantsync opcua browse`` against the simulated plant (a real asyncua server): the block
it prints is a config ``check-config`` accepts, and the walk keeps within the server's limits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plantsync.config.plant import OpcUaClientConfig
from plantsync.sim.paged import browse_paged, declare_limits
from plantsync.sim.plant import DEFAULT_MACHINES, TAGS, SimulatedPlant
from plantsync.tools.cli import main
from plantsync.tools.opcuabrowse import browse

HEAD = """\
[site]
id = "plant-01"

[hub]
url = "mqtt://127.0.0.1:1883"

"""


async def run_cli(*argv: str) -> int:
    """``plantsync …`` in a thread: it runs its own event loop."""
    return await asyncio.to_thread(main, list(argv))


async def test_the_printed_block_is_a_config_that_check_config_accepts(
    opcua_plant: SimulatedPlant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("opcua", "browse", opcua_plant.endpoint, "--depth", "2") == 0
    block = capsys.readouterr().out
    config = tmp_path / "agent.toml"
    config.write_text(HEAD + block, encoding="utf-8")

    assert await run_cli("check-config", str(config)) == 0
    assert f'node_id = "{opcua_plant.node_id("press-1", "temperature")}"' in block
    temperature = next(line for line in block.splitlines() if "press-1.temperature" in line)
    assert "# Double, unit °C, range 0 to 200, no history" in temperature
    assert "urn:plantsync:simulated-plant" in block


async def test_a_filter_keeps_only_the_variables_whose_path_matches(
    opcua_plant: SimulatedPlant, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("opcua", "browse", opcua_plant.endpoint, "--depth", "2", "--filter", "press-*/speed")
    assert await run_cli(*argv) == 0
    node_ids = [line for line in capsys.readouterr().out.splitlines() if line.startswith("node_id")]

    assert len(node_ids) == 2
    assert all(".speed" in line and "press-" in line for line in node_ids)


async def test_the_walk_follows_continuation_points_within_the_declared_limits(
    opcua_plant: SimulatedPlant,
) -> None:
    config = OpcUaClientConfig(name="plant", endpoint=opcua_plant.endpoint)
    await declare_limits(opcua_plant.server, nodes_per_browse=4, continuation_points=3)
    with browse_paged(2, continuation_points=3, nodes_per_browse=4) as seen:
        info, machines = await browse(config, depth=2, filters=["*-1/*", "press-2/*"])

    found = {(machine.name, tag.path) for machine in machines for tag in machine.tags}
    assert found == {(machine, (tag,)) for machine in DEFAULT_MACHINES for tag in TAGS}
    assert info.limits.max_nodes_per_browse == 4
    assert info.limits.max_browse_continuation_points == 3
    assert seen.browse_next_requests > 0
    assert seen.largest_browse <= 3
    assert (seen.too_many_operations, seen.refused_points) == (0, 0)


async def test_nodes_refused_a_continuation_point_are_asked_again_in_smaller_batches(
    opcua_plant: SimulatedPlant,
) -> None:
    """A server that declares no limit but holds only two continuation points."""
    config = OpcUaClientConfig(name="plant", endpoint=opcua_plant.endpoint)
    with browse_paged(2, continuation_points=2, nodes_per_browse=1000) as seen:
        _, machines = await browse(config, depth=2, filters=["*-1/*", "press-2/*"])

    assert seen.refused_points > 0
    found = {(machine.name, tag.path) for machine in machines for tag in machine.tags}
    assert found == {(machine, (tag,)) for machine in DEFAULT_MACHINES for tag in TAGS}


async def test_an_unreachable_server_exits_1_with_the_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.fixtures.opcua import free_port

    url = f"opc.tcp://127.0.0.1:{free_port()}/"
    assert await run_cli("opcua", "browse", url, "--timeout", "2s") == 1
    assert url in capsys.readouterr().err

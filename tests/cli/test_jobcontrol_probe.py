"""``plantsync jobcontrol probe`` against the simulated plant's official Job Control nodeset."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.cli import main
from tests.fixtures.opcua import free_port


def config_file(tmp_path: Path, endpoint: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f"""
[site]
id = "probe-site"
[hub]
url = "mqtt://127.0.0.1:{free_port()}"
[store]
path = "{tmp_path / "store.db"}"
[jobcontrol]
endpoint = "{endpoint}"
request_timeout = "3s"
"""
    )
    return path


async def probe(tmp_path: Path, endpoint: str) -> int:
    """The command in a thread: it runs its own event loop, the plant runs on this one."""
    argv = ["jobcontrol", "probe", "--config", str(config_file(tmp_path, endpoint))]
    return await asyncio.to_thread(main, argv)


def lines(out: str) -> dict[str, str]:
    return {line[:24].strip(): line[24:] for line in out.splitlines()}


async def test_probe_shows_the_namespace_version_receiver_and_every_method_offered(
    jobcontrol_plant: SimulatedPlant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await probe(tmp_path, jobcontrol_plant.endpoint) == 0

    shown = lines(capsys.readouterr().out)
    assert shown["namespace"].startswith("http://opcfoundation.org/UA/ISA95-JOBCONTROL_V2/")
    assert shown["version"] == "2.0.0, published 2024-01-31"
    assert shown["receiver"] == jobcontrol_plant.receiver_node_id()
    assert "StoreAndStart" in shown["offers"]
    assert "Update" in shown["offers"]
    assert shown["absent"] == "none"
    assert shown["JobOrderResponseList"].startswith("ns=")


async def test_probe_of_a_store_only_server_names_the_methods_it_lacks(
    store_only_plant: SimulatedPlant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await probe(tmp_path, store_only_plant.endpoint) == 0

    shown = lines(capsys.readouterr().out)
    assert shown["offers"] == "Store"
    assert "StoreAndStart" in shown["absent"]
    assert "Cancel" in shown["absent"]


async def test_probe_of_a_server_without_job_control_is_one_line_and_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with SimulatedPlant(port=free_port(), tick=None, job_control=False) as plant:
        assert await probe(tmp_path, plant.endpoint) == 3

    captured = capsys.readouterr()
    assert "ISA95-JOBCONTROL_V2" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


async def test_probe_of_a_server_that_is_not_there_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await probe(tmp_path, f"opc.tcp://127.0.0.1:{free_port()}") == 1

    captured = capsys.readouterr()
    assert "connecting to" in captured.err
    assert len(captured.err.strip().splitlines()) == 1

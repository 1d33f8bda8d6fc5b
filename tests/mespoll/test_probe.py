"""``plantsync check-config --probe`` against the simulated MES over real HTTP: it prints the
messages one page maps to, and a mapping that does not match is a clear error (exit 1)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from plantsync.sim.mes import SimulatedMes

DOWNTIME = """
[[mes_poll]]
name = "downtime"
url = "{url}/api/v1/downtime"
interval = "30s"
message = "equipment.downtime"
records = "/data/events"
[mes_poll.cursor]
kind = "last-timestamp"
param = "since"
field = "/modified"
[mes_poll.fields]
downtime_id = "/event_id"
equipment_id = "/machine"
start = "/from"
end = "/to"
reason_code = "/code"
category = "/planned"
[mes_poll.values]
category = {{ "true" = "planned", "false" = "unplanned" }}
"""

WORKORDERS_WRONG_POINTER = """
[[mes_poll]]
name = "workorders"
url = "{url}/api/v1/workorders"
interval = "30s"
message = "work.status"
records = "/items"
[mes_poll.fields]
work_order_id = "/wo"
state = "/status"
changed_at = "/updated"
[mes_poll.values]
state = {{ RUN = "Running" }}
"""


async def _check_config(path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "plantsync",
        "check-config",
        str(path),
        "--probe",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode()


def _config(tmp_path: Path, *endpoints: str) -> Path:
    path = tmp_path / "agent.toml"
    head = '[site]\nid = "plant-01"\n[hub]\nurl = "mqtt://127.0.0.1:1883"\n'
    path.write_text(head + f'[store]\npath = "{tmp_path / "store.db"}"\n' + "".join(endpoints))
    return path


async def test_the_probe_prints_the_messages_one_page_maps_to(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    mes.add_downtime("press-1", "CHG-02", planned=True)

    code, output = await _check_config(_config(tmp_path, DOWNTIME.format(url=mes.url)))

    assert code == 0, output
    assert "mes-poll:downtime  GET " in output
    assert "1 records, 1 mapped to equipment.downtime, 0 did not map" in output
    assert "plantsync/v1/plant-01/up/mes/equipment/press-1/downtime " in output
    assert '"reason_code":"CHG-02","reason":null,"category":"planned"' in output
    assert not (tmp_path / "store.db").exists()  # the store is not touched


async def test_a_mapping_that_does_not_match_the_answer_is_a_clear_error(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    mes.add_workorder("WO-1001", "RUN")
    config = _config(
        tmp_path, DOWNTIME.format(url=mes.url), WORKORDERS_WRONG_POINTER.format(url=mes.url)
    )

    code, output = await _check_config(config)

    assert code == 1
    assert "0 records, 0 mapped to equipment.downtime" in output
    assert "DOES NOT MAP: work.status.changed_at (from '/updated'): Field required" in output
    assert '"wo": "WO-1001"' in output


async def test_an_endpoint_that_cannot_be_read_fails_the_probe(tmp_path: Path) -> None:
    code, output = await _check_config(_config(tmp_path, DOWNTIME.format(url="http://127.0.0.1:9")))

    assert code == 1
    assert "cannot be read: mes-poll:downtime:" in output

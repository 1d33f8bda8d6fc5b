"""``make demo`` runs ``plantsync demo``: it must start everything and show the machines'
messages arriving at the hub within seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_shows_machine_state_and_the_whole_schedule_loop_at_the_hub(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "plantsync", "demo", "--duration", "14", "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any("plantsync hub tail --broker mqtt://127.0.0.1:" in line for line in lines)
    assert any(" status online " in line for line in lines), result.stdout
    for machine in ("press-1", "press-2", "lathe-1"):
        assert any(f"machine.state machine/{machine} #" in line for line in lines), machine
    assert any("schedule.ack" in line and " applied JO-DEMO-1@1" in line for line in lines)
    for number in (1, 2, 3):  # the simulated machines ran every order to its end
        order = f"order/JO-DEMO-{number}"
        assert any(f"order.status {order} " in line and " Ended" in line for line in lines)
        assert any(
            f"production.confirmation {order} " in line and "final" in line for line in lines
        )
    for mes_type in ("production.throughput", "equipment.capability", "production.yield"):
        assert any(f" {mes_type} equipment/" in line for line in lines), mes_type  # MES, polled
    assert (tmp_path / "store.db").exists()

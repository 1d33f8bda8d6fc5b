"""``make demo`` runs ``plantsync demo``: it must start everything and show the machines'
messages arriving at the hub within seconds, and its status page must let a planner approve
with the token it prints."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

WITHIN_SECONDS = 60.0


def _read(stream: object, lines: list[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line.rstrip("\n"))


def _wait_for(lines: list[str], pattern: str) -> re.Match[str]:
    deadline = time.monotonic() + WITHIN_SECONDS
    while time.monotonic() < deadline:
        for line in list(lines):
            found = re.search(pattern, line)
            if found:
                return found
        time.sleep(0.2)
    raise AssertionError(f"no line matches {pattern!r}:\n" + "\n".join(lines))


def test_the_demo_shows_machine_state_the_schedule_loop_and_an_approval_at_the_hub(
    tmp_path: Path,
) -> None:
    lines: list[str] = []
    # --duration bounds a demo the test fails to stop; the test stops it (SIGTERM, as ^C does)
    # once the hub has shown everything below, rather than waiting the duration out.
    with subprocess.Popen(
        [sys.executable, "-m", "plantsync", "demo", "--duration", "90", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as demo:
        reader = threading.Thread(target=_read, args=(demo.stdout, lines), daemon=True)
        reader.start()
        try:
            page = _wait_for(lines, r"status page: +(http://127\.0\.0\.1:\d+/)$").group(1)
            token = _wait_for(lines, r"API token to approve: (\S+)$").group(1)
            _wait_for(lines, r"schedule\.ack .*waiting-for-approval")
            auth = {"Authorization": f"Bearer {token}"}
            (waiting,) = httpx.get(f"{page}api/v1/approvals", headers=auth, timeout=10).json()
            assert waiting["order_ids"] == ["JO-DEMO-4"]
            approved = httpx.post(
                f"{page}api/v1/approvals/{waiting['row_id']}/approve", headers=auth, timeout=10
            )
            assert approved.status_code == 200
            for pattern in HUB_SHOWS:
                _wait_for(lines, pattern)
            demo.send_signal(signal.SIGTERM)
            assert demo.wait(timeout=60) == 0
        finally:
            demo.kill()
            reader.join(timeout=10)

    tail = next(line for line in lines if " hub tail --broker mqtt://127.0.0.1:" in line)
    assert tail.split()[0] == str(Path(sys.executable).parent / "plantsync")  # absolute
    assert not any("mosquitto_sub" in line for line in lines)  # no extra package needed
    assert (tmp_path / "store.db").exists()


def _both(first: str, second: str) -> str:
    """A pattern for a line that holds both texts, anywhere."""
    return rf"^(?=.*{re.escape(first)})(?=.*{re.escape(second)})"


HUB_SHOWS = (
    re.escape(" status online "),
    *(
        re.escape(f"machine.state machine/{machine} #")
        for machine in ("press-1", "press-2", "lathe-1")
    ),
    _both("schedule.ack", " applied JO-DEMO-1@1"),
    _both("schedule.ack", " applied JO-DEMO-4@2"),
    # the simulated machines ran every order to its end
    *(_both(f"order.status order/JO-DEMO-{number} ", " Ended") for number in (1, 2, 3)),
    *(_both(f"production.confirmation order/JO-DEMO-{number} ", "final") for number in (1, 2, 3)),
    # the MES, polled
    *(
        re.escape(f" {mes_type} equipment/")
        for mes_type in ("production.throughput", "equipment.capability", "production.yield")
    ),
)
"""What the hub tail prints during the demo (regular expressions), each within seconds."""

"""The simulated plant as a process of its own, so the chaos run can kill and restart it.

    python -m chaos.plant --port P [--seed S] [--tick 0.1]

Runs ``SimulatedPlant`` (a real asyncua server, three ticking machines) until SIGTERM/SIGINT.
A restart is a new process on the same port: every session and subscription is gone, as when
a real OPC UA server restarts. ``PlantProcess`` is the parent's handle on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from plantsync.sim.plant import SimulatedPlant

START_TIMEOUT = 30.0


class PlantProcess:
    """Start, kill and restart ``python -m chaos.plant`` on one port."""

    def __init__(self, port: int, seed: int, log_file: Path, tick: float = 0.1) -> None:
        self.port, self.seed, self.tick, self.log_file = port, seed, tick, log_file
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Spawn the plant and wait until its port accepts connections."""
        self.starts += 1
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "chaos.plant", "--port", str(self.port)),
                    *("--seed", str(self.seed + self.starts), "--tick", str(self.tick)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the simulated plant exited; see {self.log_file}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"the simulated plant did not listen within {START_TIMEOUT:.0f} s")

    def stop(self, *, kill: bool = False) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


async def _serve(port: int, seed: int, tick: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatedPlant(port=port, tick=tick, seed=seed, job_control=False):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="chaos.plant")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", type=float, default=0.1)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.seed, args.tick))


if __name__ == "__main__":
    main()

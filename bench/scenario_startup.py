"""Start-up: seconds from starting ``plantsync run`` to systemd's READY=1, idle and under CPU load.

    python -m bench.run --scenario startup [--quick]
    python -m bench.scenario_startup [--runs 5] [--load 6]      (one load level, printed)

The agent is started as systemd starts it (``NOTIFY_SOCKET`` set) with the config of
``tests/agent/test_systemd.py`` (a site, a hub, a store; no OPC UA, no plant system), its hub a
port where nothing listens: READY must not wait for a counterpart. The load is ``--load``
processes spinning on the CPU (each a bounded busy loop that ends with the run); with them the
agent gets about 2 / (load + 1) of a core on a 2-core machine. Also printed: how many seconds of
CPU the agent spent until READY, which is what load multiplies.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Figure

SCENARIO = "startup"
READY_WITHIN = 300.0
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


def run(quick: bool) -> list[Figure]:
    figures = []
    for load in (0, 6):
        times, cpu = measure(runs=2 if quick else 5, load=load)
        figures.append(
            Figure(
                SCENARIO,
                f"plantsync run, {load} CPU-bound processes beside it",
                "start to READY=1 (median)",
                "s",
                statistics.median(times),
                higher_is_better=False,
                notes={"runs": times, "cpu_seconds_to_ready": cpu},
            )
        )
    return figures


def measure(*, runs: int, load: int) -> tuple[list[float], list[float]]:
    """Seconds from start to READY=1, and the agent's CPU seconds until then, per run."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=READY_WITHIN * runs)])
        for _ in range(load)
    ]
    try:
        results = [_one_start() for _ in range(runs)]
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return [elapsed for elapsed, _ in results], [cpu for _, cpu in results]


def _one_start() -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as directory:
        workdir = Path(directory)
        config = workdir / "agent.toml"
        config.write_text(
            f'shutdown_timeout = "2s"\n[site]\nid = "bench-startup"\n'
            f'[hub]\nurl = "mqtt://127.0.0.1:{_closed_port()}"\n'
            f'[store]\npath = "{workdir / "store.db"}"\n[api]\nport = 0\n'
        )
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(str(workdir / "notify.sock"))
            notify.settimeout(READY_WITHIN)
            environ = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock")}
            started = time.monotonic()
            agent = subprocess.Popen(
                [sys.executable, "-m", "plantsync", "run", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environ,
            )
            try:
                while b"READY=1" not in notify.recv(4096).split(b"\n"):
                    pass
                elapsed = time.monotonic() - started
                cpu = _cpu_seconds(agent.pid)
            finally:
                agent.send_signal(signal.SIGTERM)
                agent.wait(timeout=60)
    return elapsed, cpu


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--load", type=int, default=6, help="CPU-bound processes beside it")
    args = parser.parse_args()
    times, cpu = measure(runs=args.runs, load=args.load)
    print(
        f"load {args.load}: start to READY=1 {', '.join(f'{t:.2f}' for t in times)} s"
        f" (median {statistics.median(times):.2f}); agent CPU until READY"
        f" {', '.join(f'{c:.2f}' for c in cpu)} s; loadavg {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()

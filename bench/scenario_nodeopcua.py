"""The OPC UA source against an independent peer: a node-opcua server (issue 15, item 4).

    python -m bench.run --scenario nodeopcua [--quick]

    node bench/nodeopcua/server.js (node-opcua, pinned in bench/nodeopcua/package-lock.json,
    `npm ci` on first use into bench/nodeopcua/node_modules, git-ignored), 127.0.0.1 only:
    10,000 Double variables, RATE of them change a second (round robin, paced by the clock),
    every subscription's MaxNotificationsPerPublish revised down to CAP
        ──▶ OpcUaSource (the agent's driver, default settings, publishing 100 ms, queue size 1)
        ──▶ values received / values produced, and the server process's CPU while it produced

``sim/capped.py`` (our asyncua server made to cap as node-opcua does) is what the capped
scenario measures; this is the implementation nobody here wrote. "uncapped" lifts node-opcua's
own high limit (1,000 by default) to 1,000,000, so the agent's request (10,000) stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench.report import Figure
from plantsync.config.plant import MachineConfig, OpcUaServerConfig, TagConfig
from plantsync.drivers.opcua import OpcUaSource
from tests.fixtures.opcua import free_port

PEER = Path(__file__).resolve().parent / "nodeopcua"
ITEMS = 10_000
CASES = [(rate, cap) for rate in (1_000, 5_000) for cap in (10, 300, None)]
CAPPED_SIM = {
    (1_000, 10): "100.0 % (100 items)",
    (1_000, 300): "100.0 % (100 items)",
    (1_000, None): "100.0 % (100 items)",
    (5_000, 300): "93.1 % (500 items)",
    (5_000, None): "83.1 % (500 items)",
}
"""Last session's figures from ``sim/capped.py`` (docs/performance.md, 2026-12-03), for the
same rate and cap; the issue's starting point was ~11 % at cap 10 (one request in flight)."""


@dataclass
class Outcome:
    produced: int
    received: int
    server_cpu: float  # seconds of CPU the node process used while producing (and draining)
    seconds: float
    counters: dict[str, int]

    @property
    def delivered(self) -> float:
        return self.received / self.produced if self.produced else 0.0


def run(quick: bool) -> list[Figure]:
    install()
    seconds = 5.0 if quick else 15.0
    figures: list[Figure] = []
    for rate, cap in CASES:
        outcome = asyncio.run(measure(ITEMS, rate, cap, seconds))
        case = f"{ITEMS} items @ {rate}/s, cap {cap or 'none'}"
        cpu = outcome.server_cpu / outcome.seconds
        print(
            f"   {case}: delivered {outcome.received}/{outcome.produced} = "
            f"{outcome.delivered:.1%}, node-opcua CPU {cpu:.0%} of a core, "
            f"sim/capped.py {CAPPED_SIM.get((rate, cap), 'not measured')}, "
            f"source {outcome.counters}",
            flush=True,
        )
        target = (rate, cap) == (1_000, 10)
        figures.append(
            Figure(
                "nodeopcua",
                case,
                "delivered",
                "%",
                round(outcome.delivered * 100, 1),
                target="≥ 95 % at 1,000/s, cap 10" if target else "",
                met=outcome.delivered >= 0.95 if target else None,
                notes={
                    "produced": outcome.produced,
                    "received": outcome.received,
                    "server_cpu_percent_of_a_core": round(cpu * 100),
                    "sim_capped_py": CAPPED_SIM.get((rate, cap), ""),
                    **outcome.counters,
                },
            )
        )
    return figures


def install() -> None:
    """``npm ci`` the pinned node-opcua into bench/nodeopcua/node_modules, once."""
    if (PEER / "node_modules" / "node-opcua" / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the nodeopcua scenario needs node and npm (Node 20 or newer)")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEER, check=True)


async def measure(
    items: int, rate: int, cap: int | None, seconds: float, max_publish_requests: int | None = None
) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="nodeopcua-") as workdir:
        port = free_port()
        server = await asyncio.create_subprocess_exec(
            *("node", str(PEER / "server.js"), str(port), str(items), str(rate), str(cap or 0)),
            str(Path(workdir) / "pki"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=(Path(workdir) / "node.log").open("wb"),
        )
        try:
            await _line(server, "ready", 180.0)
            endpoint = f"opc.tcp://127.0.0.1:{port}"
            return await _against(server, endpoint, items, seconds, max_publish_requests)
        finally:
            await _stop(server)


async def _against(
    server: asyncio.subprocess.Process,
    endpoint: str,
    items: int,
    seconds: float,
    max_publish_requests: int | None,
) -> Outcome:
    tags = [TagConfig(name=f"v{n}", node_id=f"ns=1;s=v{n}", queue_size=1) for n in range(items)]
    config = OpcUaServerConfig(
        name="nodeopcua",
        endpoint=endpoint,
        publishing_interval=timedelta(milliseconds=100),
        request_timeout=timedelta(seconds=60),
        machines=[MachineConfig(id="m", tags=tags)],
    )
    if max_publish_requests is not None:
        config = config.model_copy(update={"max_publish_requests": max_publish_requests})
    async with OpcUaSource(config) as source:
        initial = received = 0
        readings = source.readings()

        async def count() -> None:
            nonlocal initial, received
            async for batch in readings:
                for reading in batch:
                    if isinstance(reading.value, float) and reading.value > 0:
                        received += 1
                    else:
                        initial += 1

        counting = asyncio.create_task(count())
        async with asyncio.timeout(180):
            while initial < items:  # noqa: ASYNC110 - counted by the task above
                await asyncio.sleep(0.1)
        cpu, started = _cpu_seconds(server.pid), time.monotonic()
        assert server.stdin is not None
        server.stdin.write(f"produce {seconds}\n".encode())
        produced = int((await _line(server, "produced", seconds + 60)).split()[1])
        await asyncio.sleep(2.0)  # what the server still holds may come
        spent = _cpu_seconds(server.pid) - cpu, time.monotonic() - started
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
        return Outcome(produced, received, spent[0], spent[1], source.counters())


async def _line(server: asyncio.subprocess.Process, prefix: str, within: float) -> str:
    assert server.stdout is not None
    async with asyncio.timeout(within):
        while True:
            line = (await server.stdout.readline()).decode()
            if not line:
                raise RuntimeError("the node-opcua server exited (see its node.log)")
            if line.startswith(prefix):
                return line.strip()


async def _stop(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None and server.stdin is not None:
        with contextlib.suppress(OSError):
            server.stdin.write(b"quit\n")
        try:
            await asyncio.wait_for(server.wait(), 10)
        except TimeoutError:
            server.kill()
            await server.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

"""The rig the ingest, footprint and peer scenarios share: real processes on loopback.

    bench.opcua_source (asyncua server, own process) ──OPC UA──▶ subject ──MQTT──▶ Mosquitto
                                                                (own process)         │
    bench.ingest_consumer (own process, QoS 1, persistent session) ◀──────────────────┘

The subject is plantsync (``plantsync run --config``), the no-frills bridge (bench/bridge.py)
or Node-RED (bench/scenario_peer.py). One run: the consumer is told the start time, the source
changes items at a rate for some seconds, then the rig waits until the consumer has every
change or none arrives for ``settle`` seconds. Changes are counted by (item, change counter).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bench.common import AgentProcess, agent_config, end_process, free_ports
from bench.opcua_source import item_name, node_id
from plantsync.tools.localbroker import Mosquitto

_PYTHON = sys.executable
_ROOT = Path(__file__).resolve().parent.parent
TAGS_PER_MACHINE = 100
"""Items are grouped into machines of 100 tags: 10,000 items are 100 machines."""


class Subject(Protocol):
    """A process that subscribes to the source and publishes to the broker."""

    name: str

    @property
    def pid(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class RunResult:
    """One measured run of one subject at one rate."""

    subject: str
    items: int
    rate: float
    produced: int
    offered: float  # changes/s the source achieved
    distinct: int
    duplicates: int
    delivered: float  # distinct changes/s, from the start to the last arrival
    p50_ms: float
    p99_ms: float
    cpu_percent: float  # of one core, during production and drain
    peak_rss_mb: float
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return max(self.produced - self.distinct, 0)


# ---- /proc readings, for any subject's process ------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its waited-for children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int, key: str = "VmHWM") -> float:
    """VmHWM (peak resident set) or VmRSS (now) of ``pid``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- child processes with a line protocol -----------------------------------------------------


class LineProcess:
    """A ``python -m`` child that prints ``ready`` and takes commands on stdin."""

    def __init__(self, module: str, *arguments: str) -> None:
        self._command = [_PYTHON, "-m", module, *arguments]
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, within: float = 120.0) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self._command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=_ROOT,
        )
        line = await self.read_line(within)
        if line != "ready":
            raise RuntimeError(f"{' '.join(self._command[2:4])} did not start: {line!r}")

    async def send(self, line: str) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()

    async def read_line(self, within: float) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        async with asyncio.timeout(within):
            return (await self.process.stdout.readline()).decode().strip()

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.stdin is not None:
            await end_process(process, process.stdin.close)


class Bridge(LineProcess):
    """The ceiling: bench/bridge.py."""

    name = "bridge"

    def __init__(self, endpoint: str, broker_port: int, items: int) -> None:
        super().__init__(
            "bench.bridge",
            *("--endpoint", endpoint, "--broker-port", str(broker_port)),
            *("--items", str(items), "--tags-per-machine", str(TAGS_PER_MACHINE)),
        )


class Plantsync:
    """``plantsync run --config`` reading every item of the source, as a Subject."""

    name = "plantsync"

    def __init__(self, workdir: Path, endpoint: str, broker_port: int, items: int) -> None:
        self._api_port, self._items = free_ports(1)[0], items
        machines: dict[str, list[dict[str, str]]] = {}
        for index in range(items):
            machine, tag = item_name(index, TAGS_PER_MACHINE)
            machines.setdefault(machine, []).append(
                {"name": tag, "node_id": node_id(index, TAGS_PER_MACHINE)}
            )
        server = {
            "name": "src",
            "endpoint": endpoint,
            "request_timeout": "60s",
            "machines": [{"id": machine, "tags": tags} for machine, tags in machines.items()],
        }
        config = agent_config(
            site="bench",
            broker_port=broker_port,
            store=workdir / "store.db",
            api_port=self._api_port,
            opcua=[server],
            policy={"snapshot_interval": "0s"},
            reconnect={"initial_delay": "500ms", "max_delay": "2s"},
        )
        self.agent = AgentProcess(config, workdir)

    @property
    def pid(self) -> int:
        return self.agent.pid

    async def start(self) -> None:
        await self.agent.start()
        await self.wait_for_links(within=180)

    async def wait_for_links(self, within: float) -> None:
        """Until the hub and the OPC UA link are up (every item monitored)."""
        url = f"http://127.0.0.1:{self._api_port}/api/v1/status"
        async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(within):
            while True:
                links = (await client.get(url)).json()["links"]
                if all(links[name]["state"] == "up" for name in ("hub", "opcua:src")):
                    return
                await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await self.agent.stop()


# ---- the rig ----------------------------------------------------------------------------------


class Rig:
    """Broker, source and consumer for one item count; subjects come and go."""

    def __init__(self, workdir: Path, items: int) -> None:
        self.workdir, self.items = workdir, items
        self.broker = Mosquitto(workdir / "broker", max_queued_messages=0)
        source_port = free_ports(1)[0]
        self.endpoint = f"opc.tcp://127.0.0.1:{source_port}/bench/"
        self.source = LineProcess(
            "bench.opcua_source",
            *("--port", str(source_port), "--items", str(items)),
            *("--tags-per-machine", str(TAGS_PER_MACHINE)),
        )
        self.consumer = LineProcess("bench.ingest_consumer", "--port", str(self.broker.port))

    async def __aenter__(self) -> Rig:
        self.broker.start()
        await asyncio.gather(self.source.start(within=300), self.consumer.start())
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.source.stop()
        self.broker.stop()

    def plantsync(self, name: str = "plantsync") -> Plantsync:
        return Plantsync(self.workdir / name, self.endpoint, self.broker.port, self.items)

    def bridge(self) -> Bridge:
        return Bridge(self.endpoint, self.broker.port, self.items)

    async def report(self) -> dict[str, Any]:
        await self.consumer.send("report")
        result: dict[str, Any] = json.loads(await self.consumer.read_line(60))
        return result

    async def start(self, subject: Subject) -> None:
        """Start ``subject`` and wait until the initial values its subscription brings have
        reached the consumer and stopped arriving."""
        await self.consumer.send(f"start {time.time() + 3600}")
        await subject.start()
        await self._settle_initial_values()

    async def _settle_initial_values(self, quiet: float = 1.0, limit: float = 120.0) -> None:
        deadline = time.monotonic() + limit
        last = -1
        while time.monotonic() < deadline:
            await asyncio.sleep(quiet)
            messages = int((await self.report())["messages"])
            if messages == last and messages > 0:
                return
            last = messages

    async def measure(
        self,
        subject: Subject,
        rate: float,
        seconds: float,
        *,
        settle: float = 3.0,
        drain_timeout: float = 60.0,
        during: Callable[[], Awaitable[None]] | None = None,
    ) -> RunResult:
        """One run: ``rate`` changes/s for ``seconds``, then wait for the stragglers.

        ``during`` runs alongside production (the peer scenario's broker outage).
        """
        cpu_before, started = cpu_seconds(subject.pid), time.time()
        await self.consumer.send(f"start {started}")
        await self.source.send(f"run {rate} {seconds}")
        if during is not None:
            await during()
        words = (await self.source.read_line(seconds + 120)).split()
        produced, start, end = int(words[1]), float(words[2]), float(words[3])
        report = await self._drained(produced, settle, drain_timeout)
        cpu = cpu_seconds(subject.pid) - cpu_before
        return RunResult(
            subject=subject.name,
            items=self.items,
            rate=rate,
            produced=produced,
            offered=produced / (end - start),
            distinct=int(report["distinct"]),
            duplicates=int(report["duplicates"]),
            delivered=int(report["distinct"]) / max(float(report["last"]) - start, end - start),
            p50_ms=float(report["p50"]) * 1000,
            p99_ms=float(report["p99"]) * 1000,
            cpu_percent=100 * cpu / max(time.time() - started, 1e-9),
            peak_rss_mb=memory_mb(subject.pid),
        )

    async def _drained(self, produced: int, settle: float, limit: float) -> dict[str, Any]:
        deadline = time.monotonic() + limit
        report = await self.report()
        quiet_since = time.monotonic()
        while report["distinct"] < produced and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            fresh = await self.report()
            if fresh["received"] != report["received"]:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > settle:
                return fresh
            report = fresh
        return report


def describe(run: RunResult) -> str:
    """One line for the console."""
    return (
        f"{run.subject:>9} {run.items:>6} items @ {run.rate:>6.0f}/s: offered {run.offered:>7.0f}/s"
        f" delivered {run.delivered:>7.0f}/s lost {run.lost:>6} dup {run.duplicates:>5}"
        f" p50 {run.p50_ms:>7.0f} ms p99 {run.p99_ms:>7.0f} ms cpu {run.cpu_percent:>4.0f}%"
        f" rss {run.peak_rss_mb:>5.0f} MB"
    )

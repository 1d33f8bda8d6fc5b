"""The pieces of the fleet scenario: the hub broker with its CPU, the shared plant, the agents.

FleetBroker      Mosquitto, its pid kept so /proc tells its CPU time and memory
PlantSource      bench/opcua_source.py in its own process: one OPC UA server whose items
                 are every agent's machines (agent i reads machines m<i*M> … m<i*M+M-1>)
fleet_agents()   one AgentProcess per site, each with its own store and local API port
Fleet            the running agents: their stores read beside them (read-only), their
                 /metrics, SIGSTOP / SIGCONT
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import AgentProcess, agent_config, end_process, free_ports
from chaos.mes import MesServer
from plantsync.buffer.inspect import StoreInspection, inspect_store
from plantsync.errors import StoreError
from plantsync.tools.localbroker import Mosquitto

MACHINES_PER_AGENT = 4
TAGS_PER_MACHINE = 2
_ROOT = Path(__file__).resolve().parent.parent


class FleetBroker(Mosquitto):
    """Mosquitto whose pid (it changes at every start) the bench reads /proc with."""

    pid: int = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        process = super()._spawn()
        self.pid = process.pid
        return process

    def cpu_seconds(self) -> float:
        """User + system CPU time of the current broker process."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


class PlantSource:
    """Every agent's plant in one asyncua server process, changing items at ``rate``/s."""

    def __init__(self, port: int, agents: int) -> None:
        self.port = port
        self.items = agents * MACHINES_PER_AGENT * TAGS_PER_MACHINE
        self._process: asyncio.subprocess.Process | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/bench/"

    async def start(self, rate: float, seconds: float) -> None:
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bench.opcua_source", "--port", str(self.port), "--items", str(self.items)),
            *("--tags-per-machine", str(TAGS_PER_MACHINE)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=_ROOT,
        )
        assert self._process.stdout is not None
        assert self._process.stdin is not None
        async with asyncio.timeout(120):
            line = await self._process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the plant source did not start: {line!r}")
        self._process.stdin.write(f"run {rate} {seconds}\n".encode())
        await self._process.stdin.drain()

    async def stop(self) -> None:
        """The plant goes quiet (its server ends): from now on the agents produce nothing."""
        if self._process is not None:
            await end_process(self._process, self._process.terminate)

    def machines(self, agent: int) -> list[dict[str, object]]:
        """The ``[[opcua.machines]]`` of agent ``agent``."""
        first = agent * MACHINES_PER_AGENT
        return [
            {
                "id": f"m{machine:04d}",
                "tags": [
                    {"name": f"t{tag:03d}", "node_id": f"ns=2;s=m{machine:04d}.t{tag:03d}"}
                    for tag in range(TAGS_PER_MACHINE)
                ],
            }
            for machine in range(first, first + MACHINES_PER_AGENT)
        ]


@dataclass
class Member:
    """One agent of the fleet."""

    site: str
    process: AgentProcess
    store: Path
    mes: MesServer


class Fleet:
    """The agents: started together, their stores and metrics read, paused and resumed."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = list(members)

    async def start(self, batch: int = 5) -> None:
        """Start the agents ``batch`` at a time (each import costs a second or two of CPU)."""
        for member in self.members:
            member.mes.start()
        for first in range(0, len(self.members), batch):
            group = self.members[first : first + batch]
            await asyncio.gather(*(self._start(member) for member in group))

    async def _start(self, member: Member) -> None:
        try:
            await member.process.start(within=240)
        except RuntimeError as exc:
            log = (member.process.workdir / "agent.log").read_text(errors="replace")
            tail = "\n".join(log.splitlines()[-15:])
            raise RuntimeError(f"{member.site}: {exc}; its log ends:\n{tail}") from exc

    async def stop(self) -> None:
        await asyncio.gather(*(member.process.stop() for member in self.members))
        for member in self.members:
            member.mes.stop()

    def signal(self, signum: signal.Signals) -> None:
        for member in self.members:
            os.kill(member.process.pid, signum)

    def inspect(self, member: Member, now: float) -> StoreInspection | None:
        try:
            return inspect_store(member.store, now=now)
        except StoreError:
            return None  # a moment of lock contention: asked again on the next poll


def fleet_members(agents: int, root: Path, broker_port: int, source: PlantSource) -> list[Member]:
    """One agent per site ``fleet-01`` …: its own store, API port, and machines."""
    members = []
    for index, api_port in enumerate(free_ports(agents)):
        site = f"fleet-{index + 1:02d}"
        store = root / site / "store.db"
        opcua = {
            "name": "plant",
            "endpoint": source.endpoint,
            "publishing_interval": "250ms",
            "machines": source.machines(index),
        }
        mes = MesServer()
        config = agent_config(
            site=site,
            broker_port=broker_port,
            store=store,
            api_port=api_port,
            opcua=[opcua],
            mes={"url": mes.url},
        )
        members.append(Member(site, AgentProcess(config, root / site), store, mes))
    return members

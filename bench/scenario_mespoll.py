"""The MES polling source: records/s it maps and commits from a paged endpoint, and its CPU.

    simulated MES (its own process, N records ready) ──HTTP, pages of 500──▶ MesPollSource
        ──map (JSON pointers → contract)──▶ PollRunner ──ONE commit per page: rows + cursor──▶
        SQLite store (synchronous=FULL)

One poll reads every page from the start. ``records/s`` is records committed per second of
wall time, the MES's own time to answer included (it runs in a process of its own, so the CPU
figure is the agent side alone: driver, mapping, envelopes, store). Two endpoints: throughput
(telemetry lane, page-token cursor) and downtime (business lane, timestamp cursor).
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from bench.report import Figure
from plantsync.agent.polling import PollRunner
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.app import poll_endpoint
from plantsync.buffer.store import Store
from plantsync.config.plant import PollEndpointConfig
from plantsync.contracts import Topics
from plantsync.sim.mes_endpoints import poll_endpoints

_MES = """
import asyncio, sys
from plantsync.sim.mes import SimulatedMes
async def main():
    async with SimulatedMes() as mes:
        for n in range({records}):
            mes.add_throughput(("press-1", "press-2", "lathe-1")[n % 3], good=30, scrap=1)
            mes.add_downtime(("press-1", "press-2", "lathe-1")[n % 3])
        print(mes.url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def run(quick: bool) -> list[Figure]:
    records = 2_000 if quick else 20_000
    figures = []
    with _mes(records) as url:
        for name in ("throughput", "downtime"):
            seconds, cpu, committed = asyncio.run(_poll_all(url, name))
            rate = committed / seconds
            print(
                f"   {name}: {committed} records in {seconds:.2f} s = {rate:,.0f} records/s,"
                f" agent CPU {100 * cpu / seconds:.0f}% of a core"
                f" ({1000 * cpu / committed:.2f} ms per record)"
            )
            figures.append(
                Figure(
                    "mespoll",
                    f"{name}: {committed} records, pages of 500",
                    "records/s",
                    "records/s",
                    round(rate),
                    notes={
                        "agent_cpu_percent": round(100 * cpu / seconds, 1),
                        "agent_cpu_ms_per_1000_records": round(1e6 * cpu / committed, 1),
                    },
                )
            )
    return figures


@contextlib.contextmanager
def _mes(records: int) -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", _MES.format(records=records)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


async def _poll_all(url: str, name: str) -> tuple[float, float, int]:
    (config,) = [one for one in poll_endpoints(url) if one.name == name]
    page = {"throughput": "page_size", "downtime": "limit"}[name]
    config = PollEndpointConfig.model_validate(
        {**config.model_dump(), "query": {page: "500"}, "max_pages": 100_000}
    )
    async with _runner(config) as runner, runner.endpoint.connect() as source:
        cpu_before, started = _cpu(), time.monotonic()
        committed = await runner.poll(source)
        return time.monotonic() - started, _cpu() - cpu_before, committed


@contextlib.asynccontextmanager
async def _runner(config: PollEndpointConfig) -> AsyncIterator[PollRunner]:
    with tempfile.TemporaryDirectory(prefix="plantsync-bench-") as scratch:
        store = await Store.open(Path(scratch) / "store.db", max_size_bytes=1024**3)
        try:
            yield PollRunner(
                poll_endpoint(config),
                cursors=store.cursors,
                dead_letters=store.inbox,
                topics=Topics("plantsync/v1", "bench"),
                sequencer=Sequencer({}),
                outbox_changed=asyncio.Event(),
                health=LinkHealth(config.name),
            )
        finally:
            await store.close()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

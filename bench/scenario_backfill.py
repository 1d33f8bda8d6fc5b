"""History backfill: values/s read back from a 1 h gap of 1,000 nodes at 1 Hz (issue 18).

    bench process: fills asyncua's SQLite history file (1,000 tables x 3,600 rows)
    server process: asyncua Server over that file, the 1,000 nodes historized (HistoryRead)
    bench process: HistoryReader (the agent's, unthrottled) reads the whole hour of every node
                   ─▶ values/s, and the server process's CPU while it answered

The server runs in its own process so its CPU is its own (/proc/<pid>/stat). The reader's
rate limit is lifted: the figure is what the server can give, which ``backfill_rate`` then
caps in production. ``--quick``: 100 nodes x 10 minutes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asyncua import ua
from asyncua.ua.ua_binary import variant_to_binary

from bench.report import Figure
from plantsync.config.plant import OpcUaClientConfig
from plantsync.drivers.common.opcua import new_client
from plantsync.drivers.common.uaserver import read_server_info
from plantsync.drivers.opcua_history import HistoryReader, Wanted
from tests.fixtures.opcua import free_port

FIRST_ID = 10_000
NAMESPACE = "urn:plantsync:bench-historian"


def run(quick: bool) -> list[Figure]:
    nodes, seconds = (100, 600) if quick else (1_000, 3_600)
    with tempfile.TemporaryDirectory(prefix="plantsync-backfill-") as workdir:
        database = Path(workdir) / "history.db"
        start = datetime.now(UTC).replace(microsecond=123) - timedelta(seconds=seconds + 60)
        filled = _fill(database, nodes, seconds, start)
        print(f"   history file: {nodes} nodes x {seconds} values in {filled:.0f} s", flush=True)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.scenario_backfill", str(port), str(database), str(nodes)],
            stdout=subprocess.PIPE,
        )
        try:
            assert server.stdout is not None
            server.stdout.readline()  # "ready"
            values, elapsed, cpu = asyncio.run(_read(port, nodes, seconds, start, server.pid))
        finally:
            server.terminate()
            server.wait(timeout=30)
    rate = values / elapsed
    print(f"   {values} values in {elapsed:.1f} s: {rate:,.0f}/s, server CPU {cpu:.0%}")
    return [
        Figure(
            "backfill",
            f"{nodes} nodes x {seconds // 60} min at 1 Hz",
            "backfilled",
            "values/s",
            round(rate),
            target="every value of the gap exactly once",
            met=values == nodes * seconds,
            notes={"values": values, "seconds": round(elapsed, 1), "server_cpu": round(cpu, 2)},
        )
    ]


def _fill(database: Path, nodes: int, seconds: int, start: datetime) -> float:
    """asyncua's SQLite history layout: one table per node, a row per value."""
    began = time.monotonic()
    rows = [
        (
            start + timedelta(seconds=k),
            start + timedelta(seconds=k),
            0,
            str(float(k)),
            "Double",
            sqlite3.Binary(variant_to_binary(ua.Variant(float(k), ua.VariantType.Double))),
        )
        for k in range(seconds)
    ]
    with sqlite3.connect(database) as db:
        for n in range(nodes):
            table = f"2_{FIRST_ID + n}"
            db.execute(
                f'CREATE TABLE "{table}" (_Id INTEGER PRIMARY KEY NOT NULL, ServerTimestamp'
                " TIMESTAMP, SourceTimestamp TIMESTAMP, StatusCode INTEGER, Value TEXT,"
                " VariantType TEXT, VariantBinary BLOB)"
            )
            insert = f'INSERT INTO "{table}" VALUES (NULL, ?, ?, ?, ?, ?, ?)'  # noqa: S608 - our name
            db.executemany(insert, rows)
    return time.monotonic() - began


async def _read(
    port: int, nodes: int, seconds: int, start: datetime, server_pid: int
) -> tuple[int, float, float]:
    config = OpcUaClientConfig(name="bench", endpoint=f"opc.tcp://127.0.0.1:{port}/historian/")
    client = await new_client(config)  # the agent's set-up: timeouts and watchdog as in production
    await client.connect()
    try:
        info = await read_server_info(client, config)
        reader = HistoryReader(client.uaclient.session, info.limits, rate=1e12)
        since, until = start - timedelta(seconds=1), start + timedelta(seconds=seconds)
        wanted = [
            Wanted("m", f"v{n}", ua.NodeId.from_string(f"ns=2;i={FIRST_ID + n}"), since, until)
            for n in range(nodes)
        ]
        cpu_before, began = _cpu(server_pid), time.monotonic()
        values = 0
        async for found in reader.read(wanted):
            assert isinstance(found, list), found
            values += len(found)
        elapsed = time.monotonic() - began
        return values, elapsed, (_cpu(server_pid) - cpu_before) / elapsed
    finally:
        await client.disconnect()


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _serve(port: int, database: Path, nodes: int) -> None:
    from asyncua.server.history_sql import HistorySQLite
    from asyncua.server.server import Server

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/historian/")
    index = await server.register_namespace(NAMESPACE)
    storage = HistorySQLite(str(database))
    server.iserver.history_manager.set_storage(storage)
    await storage.init()
    folder = await server.nodes.objects.add_object(index, "historian")
    for n in range(nodes):
        node = await folder.add_variable(
            ua.NodeId.from_string(f"ns={index};i={FIRST_ID + n}"), f"v{n}", 0.0
        )
        # the table exists already (filled by the bench): asyncua logs that and goes on
        await server.historize_node_data_change(node, period=None, count=0)  # type: ignore[arg-type]
    async with server:
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))

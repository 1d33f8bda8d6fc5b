"""How fast SqliteOutbox adds and drains, against raw sqlite3 on the same machine in the same run.

    .venv/bin/python bench/bench_outbox.py [--messages 50000]

Raw sqlite3 (same schema, WAL, synchronous=FULL, one transaction per batch, no event loop) is
the ceiling; the ratio says what aiosqlite's thread hop and the outbox's bookkeeping cost.
Not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from plantsync.buffer.base import Lane, Record, RowStatus
from plantsync.buffer.sqlite import SqliteOutbox

PAYLOAD_BYTES = 300
ROOMY = 10**12
DRAIN_BATCH = 1000


def make_records(count: int) -> list[Record]:
    """``count`` telemetry records with 300-byte JSON payloads."""
    body = json.dumps({"node_id": "ns=2;s=Press1.Temperature", "value": 21.5, "pad": ""})
    padding = "x" * (PAYLOAD_BYTES - len(body))
    payload = body.replace('"pad": ""', f'"pad": "{padding}"').encode()
    return [
        Record(f"m{n}", Lane.TELEMETRY, "press-1", n, "plant/p1/up/state", payload, time.time())
        for n in range(count)
    ]


async def outbox_add(path: Path, records: list[Record], batch: int) -> float:
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    try:
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            await outbox.add(records[start : start + batch])
        return time.perf_counter() - started
    finally:
        await outbox.close()


async def outbox_drain(path: Path, count: int) -> float:
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    try:
        started = time.perf_counter()
        drained = 0
        while claimed := await outbox.begin(DRAIN_BATCH):
            await outbox.ack([item.row_id for item in claimed])
            drained += len(claimed)
        assert drained == count, (drained, count)
        return time.perf_counter() - started
    finally:
        await outbox.close()


def raw_add(path: Path, records: list[Record], batch: int) -> float:
    """The ceiling: plain sqlite3, one BEGIN IMMEDIATE … COMMIT per batch."""
    insert = (
        "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    rows = [
        (r.lane, RowStatus.READY, r.message_id, r.stream, r.seq, r.topic, r.payload, r.size, 0.0)
        for r in records
    ]
    with closing(_raw_connection(path)) as connection:
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(insert, rows[start : start + batch])
            connection.execute("COMMIT")
        return time.perf_counter() - started


def raw_drain(path: Path, count: int) -> float:
    """The ceiling: read a page in id order, delete it by id, one transaction per page."""
    select = "SELECT id FROM outbox WHERE lane = ? AND status = ? ORDER BY id LIMIT ?"
    with closing(_raw_connection(path)) as connection:
        started = time.perf_counter()
        drained = 0
        while True:
            connection.execute("BEGIN IMMEDIATE")
            ids = connection.execute(select, (Lane.TELEMETRY, 0, DRAIN_BATCH)).fetchall()
            connection.executemany("DELETE FROM outbox WHERE id = ?", ids)
            connection.execute("COMMIT")
            drained += len(ids)
            if not ids:
                break
        assert drained == count, (drained, count)
        return time.perf_counter() - started


def _raw_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    return connection


async def fresh_store(directory: Path, name: str) -> Path:
    """An empty store with the outbox's schema, closed again."""
    path = directory / f"{name}.sqlite3"
    outbox = await SqliteOutbox.open(path, max_size_bytes=ROOMY)
    await outbox.close()
    return path


def report(figure: str, count: int, seconds: float, ceiling_seconds: float) -> None:
    rate, ceiling = count / seconds, count / ceiling_seconds
    print(
        f"{figure:<28} outbox {rate:>9,.0f} msgs/s   raw sqlite3 {ceiling:>9,.0f} msgs/s"
        f"   ratio {rate / ceiling:.2f}"
    )


async def measure(directory: Path, count: int) -> None:
    records = make_records(count)
    for batch in (100, 1000):
        outbox_path = await fresh_store(directory, f"outbox-{batch}")
        raw_path = await fresh_store(directory, f"raw-{batch}")
        seconds = await outbox_add(outbox_path, records, batch)
        ceiling = raw_add(raw_path, records, batch)
        report(f"add, batches of {batch}", count, seconds, ceiling)
        if batch == DRAIN_BATCH:
            drain_seconds = await outbox_drain(outbox_path, count)
            report(
                f"drain, begin+ack of {DRAIN_BATCH}",
                count,
                drain_seconds,
                raw_drain(raw_path, count),
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000)
    arguments = parser.parse_args()
    print(f"{arguments.messages:,} messages of {PAYLOAD_BYTES} bytes, WAL, synchronous=FULL")
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(measure(Path(directory), arguments.messages))


if __name__ == "__main__":
    main()

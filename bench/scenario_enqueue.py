"""Scenario 2, durable enqueue: messages/s committed to the outbox (WAL, synchronous=FULL).

    plantsync   SqliteOutbox.add(batch) — what the pipeline's group commit calls
    ceiling     raw sqlite3, same schema, one BEGIN IMMEDIATE … COMMIT per batch, no event loop
    peer        persist-queue's SQLiteAckQueue: put every message, then get + ack every one

Batches of 100 (the pipeline commits at most ``commit_batch`` = 500 rows, fewer when the load
is light) and of 500. Runs in the bench process: the store is a library, with no network in
between; the drain scenario covers the agent process.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import persistqueue

from bench.common import backlog_records
from bench.report import Figure
from plantsync.buffer.base import Record, RowStatus
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.contracts import Topics

SCENARIO = "enqueue"
_INSERT = (
    "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def run(quick: bool) -> list[Figure]:
    count, peer_count = (20_000, 2_000) if quick else (200_000, 10_000)
    records = backlog_records(count, ("press-1", "press-2"), Topics("plantsync/v1", "bench"))
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-enqueue-") as scratch:
        root = Path(scratch)
        peer = _persist_queue(root / "peer", records[:peer_count])
        for batch in (100, 500):
            plantsync = asyncio.run(_outbox_add(root / f"outbox-{batch}.db", records, batch))
            raw = _raw_add(root / f"raw-{batch}.db", records, batch)
            case = f"{count:,} msgs of 300 B, batches of {batch}"
            figures.append(
                Figure(SCENARIO, case, "committed/s", "msg/s", plantsync, raw,
                       "raw sqlite3, same batches", "≥ 0.5x raw sqlite3", plantsync >= 0.5 * raw)
            )  # fmt: skip
            figures.append(
                Figure(SCENARIO, case, "committed/s vs peer", "msg/s", plantsync, peer,
                       "persist-queue SQLiteAckQueue put+get+ack", "≥ 5x persist-queue",
                       plantsync >= 5 * peer, notes={"peer_messages": peer_count})
            )  # fmt: skip
    return figures


async def _outbox_add(path: Path, records: Sequence[Record], batch: int) -> float:
    outbox = await SqliteOutbox.open(path, max_size_bytes=1 << 40)
    try:
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            await outbox.add(records[start : start + batch])
        return len(records) / (time.perf_counter() - started)
    finally:
        await outbox.close()


def _raw_add(path: Path, records: Sequence[Record], batch: int) -> float:
    """The ceiling: the outbox's schema (created by SqliteOutbox), plain sqlite3."""
    asyncio.run(_create(path))
    rows = [
        (r.lane, RowStatus.READY, r.message_id, r.stream, r.seq, r.topic, r.payload, r.size, 0.0)
        for r in records
    ]
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(_INSERT, rows[start : start + batch])
            connection.execute("COMMIT")
        return len(rows) / (time.perf_counter() - started)


async def _create(path: Path) -> None:
    outbox = await SqliteOutbox.open(path, max_size_bytes=1 << 40)
    await outbox.close()


def _persist_queue(path: Path, records: Sequence[Record]) -> float:
    """The peer, as shipped (WAL, a commit per put): every message put, then got and acked."""
    queue = persistqueue.SQLiteAckQueue(str(path), multithreading=False)
    started = time.perf_counter()
    for record in records:
        queue.put(record.payload)
    for _ in records:
        queue.ack(queue.get(block=False))
    return len(records) / (time.perf_counter() - started)

"""The pipeline: readings become machine.state messages with gapless per-stream sequences."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.base import Lane, Outbox
from plantsync.buffer.memory import MemoryOutbox, MemoryStorage
from plantsync.contracts import MachineStateMessage, Quality, Topics
from plantsync.drivers.base import Reading

TOPICS = Topics("plantsync/v1", "plant-01")


def reading(machine: str, tag: str, value: float | str) -> Reading:
    return Reading(machine, tag, value, Quality.GOOD, 0, datetime(2026, 1, 1, tzinfo=UTC))


async def started(outbox: Outbox) -> Pipeline:
    """A pipeline numbering on from what the outbox committed, as the agent builds it."""
    return Pipeline(outbox, TOPICS, Sequencer(await outbox.last_sequences()))


async def run_until_idle(pipeline: Pipeline) -> None:
    task = asyncio.create_task(pipeline.run())
    await pipeline.close()
    async with asyncio.timeout(5):
        await task


async def drain(outbox: MemoryOutbox) -> list[dict[str, Any]]:
    claimed = await outbox.begin(10_000)
    await outbox.ack([row.row_id for row in claimed])
    return [json.loads(row.record.payload) for row in claimed]


async def test_one_batch_becomes_one_message_per_machine() -> None:
    outbox = MemoryOutbox(max_size_bytes=1 << 20)
    pipeline = await started(outbox)
    await pipeline.submit(
        "opcua:line-1",
        [
            reading("press-1", "speed", 1.5),
            reading("press-1", "state", "Executing"),
            reading("lathe-1", "speed", 7.0),
        ],
    )
    await run_until_idle(pipeline)
    messages = await drain(outbox)
    by_machine = {m["payload"]["machine_id"]: m for m in messages}
    assert sorted(by_machine) == ["lathe-1", "press-1"]
    press = MachineStateMessage.model_validate(by_machine["press-1"])
    assert [(v.tag, v.value) for v in press.payload.values] == [
        ("speed", 1.5),
        ("state", "Executing"),
    ]
    assert press.stream == "machine/press-1"
    assert press.source == "opcua:line-1"
    assert press.seq == 1


async def test_sequences_are_gapless_per_stream_and_continue_after_a_restart() -> None:
    storage = MemoryStorage()
    outbox = MemoryOutbox(storage, max_size_bytes=1 << 20)
    pipeline = await started(outbox)
    for step in range(5):
        await pipeline.submit("opcua:a", [reading("press-1", "speed", step)])
    await run_until_idle(pipeline)
    first = [m["seq"] for m in await drain(outbox)]

    restarted = await started(MemoryOutbox(storage, max_size_bytes=1 << 20))
    await restarted.submit("opcua:a", [reading("press-1", "speed", 99)])
    await run_until_idle(restarted)
    records = await MemoryOutbox(storage, max_size_bytes=1 << 20).begin(10)
    assert first == [1, 2, 3, 4, 5]
    assert [row.record.seq for row in records] == [6]


async def test_a_snapshot_carries_every_tags_last_value_in_sequence_with_changes() -> None:
    outbox = MemoryOutbox(max_size_bytes=1 << 20)
    pipeline = await started(outbox)
    await pipeline.submit("opcua:a", [reading("press-1", "speed", 1.0)])
    await pipeline.submit("opcua:a", [reading("press-1", "state", "Executing")])
    await pipeline.request_snapshot()
    await run_until_idle(pipeline)
    messages = await drain(outbox)
    snapshot = messages[-1]
    assert snapshot["payload"]["kind"] == "snapshot"
    assert {v["tag"]: v["value"] for v in snapshot["payload"]["values"]} == {
        "speed": 1.0,
        "state": "Executing",
    }
    assert [m["seq"] for m in messages] == [1, 2, 3]


async def test_machine_state_is_telemetry_on_the_machines_topic() -> None:
    outbox = MemoryOutbox(max_size_bytes=1 << 20)
    pipeline = await started(outbox)
    await pipeline.submit("opcua:a", [reading("press-1", "speed", 1.0)])
    await run_until_idle(pipeline)
    (row,) = await outbox.begin(10)
    assert row.record.lane is Lane.TELEMETRY
    assert row.record.topic == "plantsync/v1/plant-01/up/machine/press-1/state"


async def test_telemetry_the_full_outbox_sheds_is_counted() -> None:
    outbox = MemoryOutbox(max_size_bytes=2_000)
    pipeline = await started(outbox)
    for step in range(50):
        await pipeline.submit("opcua:a", [reading("press-1", "speed", step)])
    await run_until_idle(pipeline)
    stats = await outbox.stats()
    assert pipeline.counters.dropped > 0
    assert pipeline.counters.dropped == stats.evicted_total
    assert stats.size_bytes <= 2_000

"""HQ's alarm acks between receive and apply, on a real store (and a real asyncua server): pending
while the server is down, expired after ``acknowledge_expiry``, and a call whose answer was lost
(agent or link down after the call) applied once."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.downlink import Downlink
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.sourcing.acks import APPLYING, AckRule
from plantsync.buffer.inbox import InboxStatus
from plantsync.buffer.store import Store
from plantsync.contracts import Topics
from plantsync.drivers.opcua import OpcUaSource
from plantsync.sim.alarms import SERVER_NOTIFIER, SimulatedAlarms
from plantsync.sim.plant import NAMESPACE, SimulatedPlant
from tests.contracts.examples import SITE, down_message, encoded

LINK = "opcua:line-1"
TOPIC = f"plantsync/v1/{SITE}/down/alarm"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "store.db", max_size_bytes=1 << 24)
    yield opened
    await opened.close()


async def downlink(store: Store, clock: Callable[[], float] = time.time) -> Downlink:
    return Downlink(
        store,
        Topics("plantsync/v1", SITE),
        Sequencer(await store.outbox.last_sequences()),
        policy=SchedulePolicy(timedelta(hours=4), Decimal(10)),
        outbox_changed=asyncio.Event(),
        alarm_acks={LINK: AckRule("apply", 60.0)},
        clock=clock,
    )


async def answers(store: Store) -> list[dict[str, Any]]:
    return [
        json.loads(claimed.record.payload)["payload"] for claimed in await store.outbox.begin(50)
    ]


async def test_an_ack_for_a_server_that_is_down_is_pending_once_then_expires(store: Store) -> None:
    now = [1_000_000.0]
    acks = await downlink(store, lambda: now[0])
    await acks.receive(TOPIC, encoded(down_message("alarm.ack", site=SITE)))
    await acks.alarm_acks.hold(LINK, "connection refused")
    await acks.alarm_acks.hold(LINK, "connection refused")
    now[0] += 61
    await acks.alarm_acks.hold(LINK, "connection refused")

    said = [(a["outcome"], a["reason_code"]) for a in await answers(store)]
    assert said == [("accepted", None), ("pending", "plant-unavailable"), ("rejected", "expired")]
    assert (await store.inbox.inbox_stats()).pending == 0


async def test_a_call_whose_answer_was_lost_is_applied_once_not_rejected(
    store: Store, opcua_plant: SimulatedPlant
) -> None:
    conditions = SimulatedAlarms(
        opcua_plant.server, await opcua_plant.server.get_namespace_index(NAMESPACE)
    )
    config = opcua_plant.server_config("line-1", event_notifiers=[SERVER_NOTIFIER])
    acks = await downlink(store)
    async with OpcUaSource(config) as source:
        await conditions.raise_("jam", opcua_plant.node_id("press-1", "speed"))
        async with asyncio.timeout(10):
            alarm = await anext(source.alarms())
        fields = {"condition_id": alarm.condition_id, "event_id": alarm.event_id, "user": "hq"}
        message = down_message("alarm.ack", site=SITE)
        message["payload"] |= fields
        await acks.receive(TOPIC, encoded(message))
        (row,) = await store.inbox.pending(1, target=LINK)
        # The agent called Acknowledge and stopped before it could settle the row.
        assert await source.acknowledge(alarm.condition_id, bytes.fromhex(alarm.event_id), "hq")
        await store.inbox.settle(row.row_id, InboxStatus.RETRY, reason=APPLYING, retry_at=0)
        runner = asyncio.create_task(acks.alarm_acks.run(LINK, source))
        async with asyncio.timeout(10):
            while (await store.inbox.inbox_stats()).pending:  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.02)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    accepted, applied = await answers(store)
    assert accepted["outcome"] == "accepted"
    assert applied["outcome"] == "applied"
    assert applied["reason"].startswith("BadConditionBranchAlreadyAcked")
    assert acks.alarm_acks.counters.applied == 1

"""The site's down sequence through a real Mosquitto and the real agent: every message received
counts as seen whatever its verdict, so only a seq that never arrived asks HQ for a snapshot;
HQ may reset its count with a higher ``seq_epoch``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.service import Agent
from plantsync.buffer.inbox import DownSeqMark
from plantsync.config.model import AgentConfig
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order, outcomes
from tests.e2e.support import HubRecorder, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config

pytestmark = pytest.mark.slow

MAX_MESSAGE = 64 * 1024


def _config(tmp_path: Path, broker: Mosquitto) -> AgentConfig:
    config = business_config(tmp_path / "store.db", broker, None)
    schedule = config.schedule.model_copy(update={"max_message_size": MAX_MESSAGE})
    return config.model_copy(update={"schedule": schedule})


def _gap_resyncs(hub: HubRecorder) -> list[dict[str, Any]]:
    return [
        message["payload"]
        for message in hub.business
        if message["type"] == "resync.request" and message["payload"]["reason"] == "gap"
    ]


async def _mark(agent: Agent) -> DownSeqMark | None:
    assert agent.store is not None
    return await agent.store.inbox.down_seq_mark()


async def test_rejected_and_invalid_messages_interleaved_cause_no_resync(
    broker: Mosquitto, tmp_path: Path
) -> None:
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(_config(tmp_path, broker)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = await hq.release(order("JO-1", revision=2))
        await hub.wait_for(lambda: "applied" in outcomes(hub, first["id"]), within=30)
        stale = hq.message("schedule.revision", {"orders": [order("JO-1", revision=1)]})
        invalid = hq.message("schedule.release", {"orders": [order("JO-3", revision=0)]})
        unknown_type = {**hq.message("schedule.release", {}), "type": "schedule.bogus"}
        unknown_version = {**hq.message("order.hold", {}), "schema_version": 99}
        unknown_order = hq.message(
            "order.hold", {"order_id": "JO-9", "revision": 1, "reason": "quality"}
        )
        oversized = hq.message("schedule.release", {"orders": [order("JO-5")]})
        # Over the limit, but within the MQTT 5 Maximum Packet Size (64 KiB more): delivered.
        oversized["payload"]["padding"] = "x" * (MAX_MESSAGE + 16 * 1024)
        conflict = hq.message("schedule.revision", {"orders": [{**first["payload"]["orders"][0]}]})
        conflict["payload"]["orders"][0]["priority"] = 1
        session = [stale, invalid, unknown_type, unknown_version, unknown_order, oversized]
        for message in [*session, conflict]:
            await hq.publish(message)
            await hq.publish(b"{not JSON, so no seq either")
        await hq.publish(first)  # a duplicate: seq 1 again
        last = await hq.release(order("JO-4"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, last["id"]), within=30)
        mark = await _mark(agent)
        dead_letters = await agent.store.inbox.dead_letter_count() if agent.store else 0

    reasons = [acks(hub, message["id"])[-1]["reason_code"] for message in [*session, conflict]]
    assert reasons == [
        "stale",
        "schema-violation",
        "unknown-type",
        "unknown-version",
        "unknown-order",
        "oversized",
        "conflict",
    ]
    assert dead_letters == 4 + 7  # the four refused unparsed, seven bytes that were no JSON
    assert _gap_resyncs(hub) == []  # 2 before: after each run of dead letters
    assert mark == DownSeqMark(hq.seq)


async def test_a_seq_that_never_arrived_asks_for_one_snapshot_and_says_so_in_the_log(
    broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hq = Hq(broker.url)
    caplog.set_level(logging.INFO, logger="plantsync")
    async with recording(broker.url) as hub, running_agent(_config(tmp_path, broker)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, first["id"]), within=30)
        hq.message("schedule.release", {"orders": [order("JO-2")]})  # seq 2: lost on the way
        hq.message("schedule.release", {"orders": [order("JO-3")]})  # seq 3: lost too
        after = await hq.release(order("JO-4"))
        await hub.wait_for(lambda: bool(_gap_resyncs(hub)), within=30)
        await hub.wait_for(lambda: "applied" in outcomes(hub, after["id"]), within=30)

    assert _gap_resyncs(hub) == [{"reason": "gap", "last_seq_seen": 1, "received_seq": 4}]
    lines = [r for r in caplog.records if "gap" in r.getMessage() and r.levelno >= logging.INFO]
    assert [line.getMessage() for line in lines] == [
        "down stream 'schedule': gap in epoch 0: expected seq 2, received 4 (2 missing);"
        " asked HQ for a snapshot"
    ]


async def test_a_higher_seq_epoch_resets_the_count_without_a_resync(
    broker: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hq = Hq(broker.url)
    caplog.set_level(logging.INFO, logger="plantsync")
    async with recording(broker.url) as hub, running_agent(_config(tmp_path, broker)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        for number in (1, 2, 3):
            await hq.release(order(f"JO-{number}"))
        reset = {**hq.message("schedule.release", {"orders": [order("JO-4")]}), "seq": 1}
        reset["seq_epoch"] = 1
        await hq.publish(reset)
        late = {**hq.message("schedule.release", {"orders": [order("JO-5")]}), "seq": 4}
        await hq.publish(late)  # epoch 0: from before the reset
        following = {**hq.message("schedule.release", {"orders": [order("JO-6")]}), "seq": 2}
        following["seq_epoch"] = 1
        await hq.publish(following)
        await hub.wait_for(lambda: "applied" in outcomes(hub, following["id"]), within=30)
        mark = await _mark(agent)
        resets = agent.downlink.counters.seq_resets if agent.downlink else None

    assert _gap_resyncs(hub) == []
    assert "applied" in outcomes(hub, late["id"])  # decided as usual
    assert mark == DownSeqMark(2, epoch=1)
    assert resets == 1
    messages = [record.getMessage() for record in caplog.records]
    assert (
        "down stream 'schedule': sequence reset by HQ to epoch 1 at seq 1 (was epoch 0, seq 3)"
        in messages
    )


async def test_a_snapshot_whose_as_of_seq_covers_a_lost_seq_closes_the_gap(
    broker: Mosquitto, tmp_path: Path
) -> None:
    # The fleet run's storm: a broker restart without sessions drops seq 2; the snapshot HQ
    # sends for the start-up resync (seq 3, as of 2) holds it, so asking again would be waste.
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(_config(tmp_path, broker)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        jo1, jo2, jo3 = order("JO-1"), order("JO-2"), order("JO-3")
        first = await hq.release(jo1)
        await hub.wait_for(lambda: "applied" in outcomes(hub, first["id"]), within=30)
        hq.message("schedule.release", {"orders": [jo2]})  # seq 2: lost
        covering = hq.message("schedule.snapshot", {"orders": [jo1, jo2]})
        covering["payload"]["as_of_seq"] = 2
        await hq.publish(covering)
        await hub.wait_for(lambda: "applied" in outcomes(hub, covering["id"]), within=30)
        hq.message("schedule.release", {"orders": [jo3]})  # seq 4: lost
        hq.message("schedule.release", {"orders": [order("JO-4")]})  # seq 5: lost
        short = hq.message("schedule.snapshot", {"orders": [jo1, jo2, jo3]})
        short["payload"]["as_of_seq"] = 4  # holds seq 4, not seq 5
        await hq.publish(short)
        await hub.wait_for(lambda: bool(_gap_resyncs(hub)), within=30)
        await hub.wait_for(lambda: "applied" in outcomes(hub, short["id"]), within=30)
        mark = await _mark(agent)

    assert _gap_resyncs(hub) == [{"reason": "gap", "last_seq_seen": 4, "received_seq": 6}]
    assert mark == DownSeqMark(6)

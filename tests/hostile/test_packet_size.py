"""MQTT 5 Maximum Packet Size on a real Mosquitto: the agent asks the broker for no packet more
than 64 KiB above its largest down message. A message a little over the limit still arrives
and is rejected with its size, id and hash; one far beyond it is never sent to the agent (its
memory does not grow by it), its seq shows as a gap, and the agent keeps applying."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plantsync.config.model import AgentConfig, MqttProtocol
from plantsync.drivers.mqtt import maximum_packet_size
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order, outcomes
from tests.e2e.support import SITE, HubRecorder, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.hostile.support import PeakRss, publish_from_child

pytestmark = pytest.mark.slow

KB, MB = 1 << 10, 1 << 20
LIMIT = 64 * KB
TOPIC = f"plantsync/v1/{SITE}/down/schedule"


def _config(tmp_path: Path, broker: Mosquitto, protocol: MqttProtocol) -> AgentConfig:
    config = business_config(tmp_path / "store.db", broker, None)
    schedule = config.schedule.model_copy(update={"max_message_size": LIMIT})
    hub = config.hub.model_copy(update={"protocol": protocol})
    return config.model_copy(update={"schedule": schedule, "hub": hub})


def _padded(hq: Hq, size: int) -> dict[str, Any]:
    message = hq.message("schedule.release", {"orders": [order("JO-9")]})
    message["payload"]["padding"] = "x" * size
    return message


def _gap_resyncs(hub: HubRecorder) -> list[dict[str, Any]]:
    return [
        m["payload"]
        for m in hub.business
        if m["type"] == "resync.request" and m["payload"]["reason"] == "gap"
    ]


def test_the_packet_limit_is_a_little_above_the_message_limit() -> None:
    assert maximum_packet_size(LIMIT) == LIMIT + 64 * KB
    assert maximum_packet_size(1 << 40) == 268_435_455  # the most MQTT can express


async def test_on_mqtt_5_one_far_over_the_limit_is_not_delivered_and_one_just_over_is_rejected(
    broker: Mosquitto, tmp_path: Path
) -> None:
    hq = Hq(broker.url)
    config = _config(tmp_path, broker, MqttProtocol.AUTO)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, first["id"]), within=30)
        just_over = _padded(hq, LIMIT + 16 * KB)
        await hq.publish(just_over)
        await hub.wait_for(lambda: bool(acks(hub, just_over["id"])), within=30)
        far_over = _padded(hq, 20 * MB)
        (tmp_path / "big.json").write_bytes(json.dumps(far_over).encode())
        with PeakRss() as rss:
            await publish_from_child(broker.url, TOPIC, tmp_path / "big.json")
            after = await hq.release(order("JO-2"))
            await hub.wait_for(lambda: "applied" in outcomes(hub, after["id"]), within=30)
        protocol = agent.health["hub"].peer

    (rejected,) = acks(hub, just_over["id"])
    size = len(json.dumps(just_over).encode())
    assert rejected["reason_code"] == "oversized"
    assert f"the message has {size} bytes, the limit is {LIMIT}" in rejected["reason"]
    assert "sha256:" in rejected["reason"]
    assert acks(hub, far_over["id"]) == []  # the broker never sent it
    assert _gap_resyncs(hub) == [{"reason": "gap", "last_seq_seen": 2, "received_seq": 4}]
    assert protocol is not None
    assert "MQTT 5" in protocol
    assert rss.growth < 16 * MB, rss.growth  # +64-84 MB when the client read it whole
    print(f"20 MB down message on MQTT 5: RSS +{rss.growth / MB:.1f} MB")


async def test_on_mqtt_3_1_1_the_agents_own_check_rejects_a_message_far_over_the_limit(
    broker: Mosquitto, tmp_path: Path
) -> None:
    hq = Hq(broker.url)
    config = _config(tmp_path, broker, MqttProtocol.V311)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        far_over = _padded(hq, 1 * MB)
        await hq.publish(far_over)
        after = await hq.release(order("JO-2"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, after["id"]), within=30)

    (rejected,) = acks(hub, far_over["id"])
    assert rejected["reason_code"] == "oversized"
    assert _gap_resyncs(hub) == []

"""An oversized down message through a real Mosquitto: rejected with its size, id and hash,
answered with a rejection ack, and kept as a bounded prefix only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, MqttProtocol
from plantsync.contracts.inbound import KEPT_PREFIX_BYTES
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order
from tests.e2e.support import SITE, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.hostile.support import PeakRss, publish_from_child

pytestmark = pytest.mark.slow

MB = 1 << 20


def _on_mqtt_3_1_1(config: AgentConfig) -> AgentConfig:
    """These messages are far above the limit: on MQTT 5 the broker would not send them at all
    (Maximum Packet Size, ``test_packet_size.py``); on 3.1.1 the agent's own check refuses
    them, which is what is tested here."""
    return config.model_copy(
        update={"hub": config.hub.model_copy(update={"protocol": MqttProtocol.V311})}
    )


async def _reported_outbox(agent: Agent) -> dict[str, Any]:
    """The outbox as /api/v1/status (and so the status page) reports it."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
        outbox: dict[str, Any] = (await api.get("/api/v1/status")).json()["outbox"]
    return outbox


def _store_bytes(store: Path) -> int:
    return sum(p.stat().st_size for p in store.parent.glob(store.name + "*"))


async def test_a_20_mb_down_message_is_rejected_and_only_its_prefix_is_kept(
    broker: Mosquitto, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    hq = Hq(broker.url)
    config = _on_mqtt_3_1_1(business_config(store, broker, None))
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: bool(acks(hub, first["id"])), within=30)
        message = hq.message("schedule.release", {"orders": [order("JO-2")]})
        message["payload"]["padding"] = "x" * (20 * MB)
        payload = json.dumps(message).encode()
        (tmp_path / "big.json").write_bytes(payload)
        before = _store_bytes(store)
        with PeakRss() as rss:
            await publish_from_child(
                broker.url, f"plantsync/v1/{SITE}/down/schedule", tmp_path / "big.json"
            )
            await hub.wait_for(lambda: bool(acks(hub, message["id"])), within=30)
        grown = _store_bytes(store) - before
        reported = await _reported_outbox(agent)

    (ack,) = acks(hub, message["id"])
    assert ack["outcome"] == "rejected"
    assert ack["reason_code"] == "oversized"
    assert f"{len(payload)} bytes" in ack["reason"]
    assert "sha256:" in ack["reason"]
    assert grown < 1 * MB, grown  # 42 MB before: the whole message, in the WAL and the file
    # The status page reported 0 bytes before: the dead letter was outside the cap.
    assert reported["dead_letter_bytes"] > KEPT_PREFIX_BYTES
    assert reported["size_bytes"] >= reported["dead_letter_bytes"]
    # What remains is paho's: it reads the whole packet (64-84 MB measured for 20 MB) before
    # the agent sees a byte; only MQTT 5 Maximum Packet Size in the driver can refuse earlier.
    assert rss.growth < 8 * 20 * MB, rss.growth
    print(
        f"20 MB down message: RSS +{rss.growth / MB:.1f} MB, store files +{grown / 1024:.1f} KB,"
        f" reported {reported['size_bytes']} B of which dead letters"
        f" {reported['dead_letter_bytes']} B"
    )


async def test_the_dead_letter_keeps_a_prefix_with_the_reason(
    broker: Mosquitto, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    hq = Hq(broker.url)
    config = _on_mqtt_3_1_1(business_config(store, broker, None))
    async with recording(broker.url) as hub, running_agent(config) as agent:
        message = hq.message("schedule.release", {"orders": [order("JO-2")]})
        message["payload"]["padding"] = "x" * (2 * MB)
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        await hq.publish(json.dumps(message).encode())
        await hub.wait_for(lambda: bool(acks(hub, message["id"])), within=30)
        assert agent.store is not None
        (letter,) = await agent.store.inbox.dead_letters()

    whole = json.dumps(message).encode()
    assert letter.message_id == message["id"]
    assert len(letter.payload) == KEPT_PREFIX_BYTES
    assert whole.startswith(letter.payload)
    assert (letter.size, letter.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())

"""Each metric moves when the thing it measures happens: an agent over a real store, no links."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from plantsync.agent.service import Agent
from plantsync.buffer.base import Lane, Record
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    apply_pending,
    attached,
    client,
    config,
    confirmation,
    down,
    order,
)
from tests.metrics.support import scrape, value


async def test_a_settled_schedule_moves_the_latency_histogram_and_the_success_counters(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    before = await scrape(api)
    _, payload = down("schedule.release", 1, order("JO-1"), order("JO-2"))

    await agent.downlink.receive(DOWN_TOPIC, payload)
    received = await scrape(api)
    await apply_pending(agent)
    after = await scrape(api)

    latency = "plantsync_schedule_update_latency_seconds_count"
    assert value(before, latency) == 0
    assert value(after, latency) == 1
    assert 0 < value(after, "plantsync_schedule_update_latency_seconds_sum") < 60
    assert value(received, "plantsync_schedule_messages_received_total") == 1
    assert value(received, "plantsync_inbox_pending") == 1
    assert value(after, "plantsync_inbox_pending") == 0
    settled = "plantsync_schedule_messages_settled_total"
    assert value(before, settled, outcome="applied") == 0
    assert value(after, settled, outcome="applied") == 1
    assert value(after, settled, outcome="rejected") == 0
    assert value(after, "plantsync_schedule_orders_applied_total") == 2


async def test_what_a_link_counted_this_session_is_a_metric(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    agent.health["plant"].counters = {"dropped": 3, "publish_requests": 5}

    samples = await scrape(api)

    count = "plantsync_link_session_count"
    assert value(samples, count, link="plant", counter="dropped") == 3
    assert value(samples, count, link="plant", counter="publish_requests") == 5


async def test_a_stale_schedule_counts_as_rejected(agent: Agent, api: httpx.AsyncClient) -> None:
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.release", 1, order("JO-1", 2))[1])
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.revision", 2, order("JO-1", 1))[1])
    await apply_pending(agent)

    samples = await scrape(api)
    settled = "plantsync_schedule_messages_settled_total"
    assert value(samples, settled, outcome="applied") == 1
    assert value(samples, settled, outcome="rejected") == 1
    assert value(samples, "plantsync_schedule_update_latency_seconds_count") == 1


async def test_a_dead_letter_moves_its_counter_and_the_stored_count(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    before = await scrape(api)

    await agent.downlink.receive(DOWN_TOPIC, b"{not json")
    after = await scrape(api)

    assert value(before, "plantsync_dead_letters_total") == 0
    assert value(after, "plantsync_dead_letters_total") == 1
    assert value(after, "plantsync_dead_letters_stored") == 1
    # its rejection ack waits in the business lane
    assert value(after, "plantsync_outbox_depth", lane="business") == 1


async def test_confirmations_are_counted_by_final_and_fill_the_business_lane(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    before = await scrape(api)

    await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation("JO-1"))
    await api.post(
        "/api/v1/confirmations",
        headers=AUTH,
        json=confirmation("JO-2", final=False, confirmation_id="JO-2-c1"),
    )
    after = await scrape(api)

    assert value(before, "plantsync_confirmations_total", final="true") == 0
    assert value(after, "plantsync_confirmations_total", final="true") == 1
    assert value(after, "plantsync_confirmations_total", final="false") == 1
    assert value(before, "plantsync_outbox_depth", lane="business") == 0
    assert value(after, "plantsync_outbox_depth", lane="business") == 2
    assert value(after, "plantsync_outbox_oldest_age_seconds", lane="business") >= 0
    assert value(after, "plantsync_outbox_size_bytes") > value(
        before, "plantsync_outbox_size_bytes"
    )


async def test_metrics_follow_the_read_access_rule(tmp_path: Path) -> None:
    remote = config(tmp_path / "store.db", host="0.0.0.0")
    async with attached(remote) as agent, client(agent, host="10.0.0.5") as api:
        assert (await api.get("/metrics")).status_code == 401
        assert (await api.get("/metrics", headers=AUTH)).status_code == 200


async def test_readyz_refuses_when_the_hub_is_down_and_the_outbox_is_above_80_percent(
    tmp_path: Path,
) -> None:
    small = config(tmp_path / "store.db", max_size=4000)
    async with attached(small) as agent, client(agent) as api:
        assert (await api.get("/readyz")).status_code == 200
        for number in range(5):
            body = confirmation(f"JO-{number}", confirmation_id=f"JO-{number}-c1")
            await api.post("/api/v1/confirmations", headers=AUTH, json=body)
        answer = await api.get("/readyz")
        samples = await scrape(api)
    assert value(samples, "plantsync_outbox_size_bytes") >= 0.8 * 4000
    assert answer.status_code == 503
    assert "hub" in answer.json()["reason"]


async def test_evicted_telemetry_moves_the_eviction_counter(tmp_path: Path) -> None:
    async with attached(config(tmp_path / "store.db", max_size=2000)) as agent:
        assert agent.store is not None
        async with client(agent) as api:
            before = await scrape(api)
            for seq in range(1, 21):
                await agent.store.outbox.add([_telemetry(seq)])
            after = await scrape(api)

    assert value(before, "plantsync_outbox_evicted_total") == 0
    assert value(after, "plantsync_outbox_evicted_total") > 0
    assert value(after, "plantsync_outbox_depth", lane="telemetry") < 20


def _telemetry(seq: int) -> Record:
    return Record(f"m-{seq}", Lane.TELEMETRY, "machine/m1", seq, "t/m1", b"x" * 200, time.time())

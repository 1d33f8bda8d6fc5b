"""What the plant reports closes an order for retention: its final confirmation, or the state
Ended or Aborted; the nightly prune then forgets it after ``store.keep_closed_orders``."""

from __future__ import annotations

import time

import httpx

from plantsync.agent.housekeeping import retention_policy
from plantsync.agent.service import Agent
from tests.api.support import AUTH, DOWN_TOPIC, apply_pending, confirmation, down, order

DAY = 24 * 3600.0


async def test_an_order_the_plant_finished_is_forgotten_after_the_window_and_others_stay(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    assert agent.store is not None
    for number, order_id in enumerate(("JO-1", "JO-2", "JO-3", "JO-4"), start=1):
        await agent.downlink.receive(
            DOWN_TOPIC, down("schedule.release", number, order(order_id))[1]
        )
    await apply_pending(agent)

    final = confirmation("JO-1", confirmation_id="JO-1-c1", final=True)
    partial = confirmation("JO-3", confirmation_id="JO-3-c1", final=False)
    for body in (final, partial):
        assert (await api.post("/api/v1/confirmations", headers=AUTH, json=body)).is_success
    ended = {
        "order_id": "JO-2",
        "revision": 1,
        "state": "Ended",
        "changed_at": "2026-11-25T06:00:00Z",
    }
    running = {**ended, "order_id": "JO-4", "state": "Running"}
    for body in (ended, running):
        assert (await api.post("/api/v1/order-status", headers=AUTH, json=body)).is_success

    report = await agent.store.prune(retention_policy(agent.config.store), time.time() + 31 * DAY)
    left = [state.order_id for state in await agent.store.inbox.schedule()]

    assert report.orders == 2
    assert sorted(left) == ["JO-3", "JO-4"]

"""The last-known-good schedule and the changes waiting for a planner, read over the API."""

from __future__ import annotations

from datetime import timedelta

import httpx

from plantsync.agent.service import Agent
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    apply_pending,
    business_messages,
    down,
    order,
    parts,
)


async def _release(agent: Agent, seq: int, *orders: dict[str, object]) -> str:
    assert agent.downlink is not None
    message_id, payload = down("schedule.release", seq, *orders)
    await agent.downlink.receive(DOWN_TOPIC, payload)
    await apply_pending(agent)
    return message_id


async def _waiting_revision(agent: Agent) -> tuple[int, str]:
    """JO-1 starts within the frozen horizon: its revision waits for approval."""
    await _release(agent, 1, order("JO-1", starts_in=timedelta(hours=1)))
    assert agent.downlink is not None
    message_id, payload = down(
        "schedule.revision", 2, order("JO-1", 2, starts_in=timedelta(hours=1), priority=1)
    )
    await agent.downlink.receive(DOWN_TOPIC, payload)
    await apply_pending(agent)
    [row] = await parts(agent).inbox.waiting_approval()
    return row.row_id, message_id


async def _ack_outcomes(agent: Agent, message_id: str) -> list[tuple[str, str | None]]:
    return [
        (m["payload"]["outcome"], m["payload"]["reason_code"])
        for m in await business_messages(agent)
        if m["type"] == "schedule.ack" and m["payload"]["original_id"] == message_id
    ]


async def test_the_schedule_is_grouped_by_work_center_in_planned_order(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    await _release(
        agent,
        1,
        order("JO-2", starts_in=timedelta(days=3)),
        order("JO-1", starts_in=timedelta(days=2)),
        order("JO-3", work_center="line-2"),
    )

    answer = await api.get("/api/v1/schedule")

    assert answer.status_code == 200
    schedule = answer.json()
    assert schedule["hub_state"] == "connecting"
    groups = {
        g["work_center"]: [o["order_id"] for o in g["orders"]] for g in schedule["work_centers"]
    }
    assert groups == {"line-1": ["JO-1", "JO-2"], "line-2": ["JO-3"]}
    first = schedule["work_centers"][0]["orders"][0]
    assert first["revision"] == 1
    assert first["status"] == "Released"
    assert first["order"]["quantity"] == {"value": "100", "unit": "pcs"}
    assert first["order"]["order_id"] == "JO-1"


async def test_an_order_names_the_schedule_message_that_applied_it(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    """From the store: it outlives restarts (tests/buffer/test_correlation.py)."""
    message_id = await _release(agent, 7, order("JO-1"))

    found = (await api.get("/api/v1/orders/JO-1")).json()

    assert found["correlation_id"] == "plan-7"
    assert found["applied_by"] == message_id


async def test_the_schedule_of_one_work_center(agent: Agent, api: httpx.AsyncClient) -> None:
    await _release(agent, 1, order("JO-1"), order("JO-3", work_center="line-2"))

    answer = await api.get("/api/v1/schedule", params={"work_center": "line-2"})
    unknown = await api.get("/api/v1/schedule", params={"work_center": "line-9"})

    [group] = answer.json()["work_centers"]
    assert group["work_center"] == "line-2"
    assert [o["order_id"] for o in group["orders"]] == ["JO-3"]
    assert unknown.json()["work_centers"] == []


async def test_one_order_or_404(agent: Agent, api: httpx.AsyncClient) -> None:
    await _release(agent, 1, order("JO-1"))

    found = await api.get("/api/v1/orders/JO-1")
    missing = await api.get("/api/v1/orders/JO-404")

    assert found.status_code == 200
    assert found.json()["order"]["product_id"] == "PRD-100"
    assert missing.status_code == 404
    assert "JO-404" in missing.json()["detail"]


async def test_a_change_inside_the_frozen_horizon_is_listed_with_what_it_would_change(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    row_id, message_id = await _waiting_revision(agent)

    [waiting] = (await api.get("/api/v1/approvals")).json()

    assert waiting["row_id"] == row_id
    assert waiting["message_id"] == message_id
    assert waiting["type"] == "schedule.revision"
    assert waiting["order_ids"] == ["JO-1"]
    assert "frozen horizon" in waiting["reason"]
    [change] = waiting["orders"]
    assert (change["current"]["revision"], change["current"]["priority"]) == (1, 10)
    assert (change["proposed"]["revision"], change["proposed"]["priority"]) == (2, 1)


async def test_an_approved_change_is_applied_and_acknowledged_to_hq(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    row_id, message_id = await _waiting_revision(agent)

    answer = await api.post(f"/api/v1/approvals/{row_id}/approve", headers=AUTH)
    await apply_pending(agent)

    assert answer.status_code == 200
    assert answer.json() == {"row_id": row_id, "decision": "approved"}
    assert await _ack_outcomes(agent, message_id) == [
        ("accepted", None),
        ("waiting-for-approval", None),
        ("applied", None),
    ]
    assert (await api.get("/api/v1/orders/JO-1")).json()["revision"] == 2
    assert (await api.get("/api/v1/approvals")).json() == []


async def test_a_rejected_change_is_acknowledged_with_the_planners_reason(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    row_id, message_id = await _waiting_revision(agent)

    answer = await api.post(
        f"/api/v1/approvals/{row_id}/reject", headers=AUTH, json={"reason": "line 1 is full"}
    )

    assert answer.status_code == 200
    assert answer.json()["decision"] == "rejected"
    assert (await _ack_outcomes(agent, message_id))[-1] == ("rejected", "approval-rejected")
    [ack] = [
        m
        for m in await business_messages(agent)
        if m["type"] == "schedule.ack" and m["payload"]["outcome"] == "rejected"
    ]
    assert ack["payload"]["reason"] == "line 1 is full"
    assert (await api.get("/api/v1/orders/JO-1")).json()["revision"] == 1


async def test_deciding_on_a_change_that_does_not_wait_is_404(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    row_id, _ = await _waiting_revision(agent)
    await api.post(f"/api/v1/approvals/{row_id}/approve", headers=AUTH)

    again = await api.post(f"/api/v1/approvals/{row_id}/approve", headers=AUTH)
    rejected = await api.post(
        f"/api/v1/approvals/{row_id}/reject", headers=AUTH, json={"reason": "too late"}
    )
    unknown = await api.post("/api/v1/approvals/999/approve", headers=AUTH)

    assert [again.status_code, rejected.status_code, unknown.status_code] == [404, 404, 404]


async def test_a_rejection_needs_a_reason(agent: Agent, api: httpx.AsyncClient) -> None:
    row_id, _ = await _waiting_revision(agent)

    missing = await api.post(f"/api/v1/approvals/{row_id}/reject", headers=AUTH)
    empty = await api.post(f"/api/v1/approvals/{row_id}/reject", headers=AUTH, json={"reason": ""})

    assert [missing.status_code, empty.status_code] == [422, 422]
    assert len(await parts(agent).inbox.waiting_approval()) == 1

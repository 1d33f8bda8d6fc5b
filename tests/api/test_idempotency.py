"""A post from the plant is committed once per key: a retry is answered with the first answer,
other content under the same key is refused, and an order HQ never sent is flagged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from plantsync.agent.service import Agent
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    apply_pending,
    attached,
    business_messages,
    client,
    config,
    confirmation,
    down,
    order,
)
from tests.metrics.support import scrape, value

STATUS = {
    "order_id": "JO-1",
    "revision": 1,
    "state": "Running",
    "changed_at": "2026-11-25T06:00:00Z",
}
START, END = "2026-11-25T05:00:00Z", "2026-11-25T06:00:00Z"


def _confirmation(order_id: str, **overrides: Any) -> dict[str, Any]:
    """The same confirmation each time it is made (the support's moves with the clock)."""
    return confirmation(order_id, actual_start=START, actual_end=END, **overrides)


async def _post(api: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await api.post("/api/v1/confirmations", headers={**AUTH, **headers}, json=body)


async def test_a_confirmation_posted_twice_is_one_message_and_the_retry_gets_the_first_answer(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    body = _confirmation("JO-1")

    first = await _post(api, body)
    retry = await _post(api, body)

    [message] = await business_messages(agent)
    assert first.status_code == 202
    assert retry.status_code == 200
    assert retry.json() == first.json() == {"message_id": message["id"]}
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


async def test_a_retry_takes_no_sequence_number(agent: Agent, api: httpx.AsyncClient) -> None:
    await _post(api, _confirmation("JO-1"))
    await _post(api, _confirmation("JO-1"))
    await _post(api, _confirmation("JO-1", confirmation_id="JO-1-c2"))

    messages = await business_messages(agent)
    assert [(m["stream"], m["seq"]) for m in messages] == [("order/JO-1", 1), ("order/JO-1", 2)]


async def test_the_same_confirmation_id_with_other_quantities_is_409_naming_the_field(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    first = await _post(api, _confirmation("JO-1"))
    other = await _post(api, _confirmation("JO-1", good_quantity={"value": "96", "unit": "pcs"}))

    assert other.status_code == 409
    reason = other.json()["detail"]
    assert "'JO-1-c1'" in reason
    assert 'good_quantity.value was "95", is "96" now' in reason
    assert first.json()["message_id"] in reason
    assert "actual_end" not in reason  # only what differs is named
    assert len(await business_messages(agent)) == 1


async def test_an_idempotency_key_header_is_the_key_when_given(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    first = await _post(api, _confirmation("JO-1"), **{"Idempotency-Key": "k-1"})
    retry = await _post(api, _confirmation("JO-1"), **{"Idempotency-Key": "k-1"})
    conflict = await _post(
        api, _confirmation("JO-1", confirmation_id="JO-1-c9"), **{"Idempotency-Key": "k-1"}
    )

    assert [first.status_code, retry.status_code, conflict.status_code] == [202, 200, 409]
    assert "confirmation_id was" in conflict.json()["detail"]
    assert len(await business_messages(agent)) == 1


async def test_order_status_is_kept_by_its_header_or_else_by_its_content(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    plain = [await api.post("/api/v1/order-status", headers=AUTH, json=STATUS) for _ in (1, 2)]
    keyed = {**AUTH, "Idempotency-Key": "status-7"}
    running = await api.post("/api/v1/order-status", headers=keyed, json=STATUS)
    ended = await api.post("/api/v1/order-status", headers=keyed, json={**STATUS, "state": "Ended"})

    assert [answer.status_code for answer in plain] == [202, 200]
    assert plain[0].json() == plain[1].json()
    assert running.status_code == 202  # another key: the header's, not the content's
    assert ended.status_code == 409
    assert 'state was "Running", is "Ended" now' in ended.json()["detail"]
    assert len(await business_messages(agent)) == 2


async def test_a_retry_after_a_restart_gets_the_first_answer(tmp_path: Path) -> None:
    settings = config(tmp_path / "store.db")
    async with attached(settings) as agent, client(agent) as api:
        first = await _post(api, _confirmation("JO-1"))
    async with attached(settings) as agent, client(agent) as api:
        retry = await _post(api, _confirmation("JO-1"))
        conflict = await _post(api, _confirmation("JO-1", final=False))
        messages = await business_messages(agent)

    assert (first.status_code, retry.status_code, conflict.status_code) == (202, 200, 409)
    assert retry.json() == first.json()
    assert [m["id"] for m in messages] == [first.json()["message_id"]]


async def test_an_order_hq_never_sent_is_flagged_unplanned_and_counted(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.release", 1, order("JO-1"))[1])
    await apply_pending(agent)

    await _post(api, _confirmation("JO-1"))
    await _post(api, _confirmation("JO-X"))
    await _post(api, _confirmation("JO-X"))  # a retry is not counted again
    await api.post("/api/v1/order-status", headers=AUTH, json={**STATUS, "order_id": "JO-X"})
    samples = await scrape(api)
    status = (await api.get("/api/v1/status", headers=AUTH)).json()
    page = (await api.get("/", headers=AUTH)).text

    reported = {
        (m["payload"]["order_id"], m["type"]): m["payload"]["unplanned"]
        for m in await business_messages(agent)
        if m["type"] != "schedule.ack"
    }
    assert reported == {
        ("JO-1", "production.confirmation"): False,
        ("JO-X", "production.confirmation"): True,
        ("JO-X", "order.status"): True,
    }
    unplanned = "plantsync_unplanned_reports_total"
    assert value(samples, unplanned, type="production.confirmation") == 1
    assert value(samples, unplanned, type="order.status") == 1
    assert value(samples, "plantsync_idempotent_replays_total") == 1
    assert status["plant_input"] == {
        "unplanned_confirmations": 1,
        "unplanned_statuses": 1,
        "replayed": 1,
        "conflicts": 0,
    }
    assert "unplanned orders in 1 confirmation(s) and 1 status report(s)" in page


async def test_two_posts_of_one_key_at_once_are_one_message(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    body = _confirmation("JO-1")

    answers = await asyncio.gather(*(_post(api, body) for _ in range(5)))

    [message] = await business_messages(agent)
    assert sorted(answer.status_code for answer in answers) == [200, 200, 200, 200, 202]
    assert {answer.json()["message_id"] for answer in answers} == {message["id"]}

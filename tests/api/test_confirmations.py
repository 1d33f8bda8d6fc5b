"""The MES posts confirmations and order status: committed to the outbox before the 202."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from plantsync.agent.service import Agent
from tests.api.support import AUTH, attached, business_messages, client, config, confirmation


async def test_a_confirmation_is_in_the_outbox_when_the_202_arrives(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    answer = await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation("JO-1"))

    # Nothing awaited in between: the row was committed before the answer was sent.
    [message] = await business_messages(agent)
    assert answer.status_code == 202
    assert answer.json() == {"message_id": message["id"]}
    assert message["type"] == "production.confirmation"
    assert message["source"] == "mes-api"
    assert (message["stream"], message["seq"]) == ("order/JO-1", 1)
    assert message["payload"]["confirmation_id"] == "JO-1-c1"
    assert message["payload"]["good_quantity"] == {"value": "95", "unit": "pcs"}


async def test_order_status_and_confirmations_share_the_orders_stream(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    status = {
        "order_id": "JO-1",
        "revision": 1,
        "state": "Running",
        "changed_at": "2026-11-25T06:00:00Z",
    }

    first = await api.post("/api/v1/order-status", headers=AUTH, json=status)
    second = await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation("JO-1"))

    assert [first.status_code, second.status_code] == [202, 202]
    messages = await business_messages(agent)
    assert [(m["type"], m["stream"], m["seq"]) for m in messages] == [
        ("order.status", "order/JO-1", 1),
        ("production.confirmation", "order/JO-1", 2),
    ]


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"good_quantity": None}, "good_quantity"),
        ({"order_id": "JO/1"}, "order_id"),
        ({"order_id": "#"}, "order_id"),
        ({"actual_start": "2099-01-01T00:00:00Z"}, "actual_end must not be earlier"),
        ({"scrap_quantity": {"value": "1", "unit": "kg"}}, "same unit"),
        ({"good_quantity": {"value": 95, "unit": "pcs"}}, "decimal string"),
        ({"actual_end": "2026-11-25T06:00:00"}, "timezone"),
        ({"colour": "blue"}, "colour"),
    ],
)
async def test_an_invalid_confirmation_is_422_and_nothing_is_stored(
    agent: Agent, api: httpx.AsyncClient, change: dict[str, Any], names: str
) -> None:
    merged = {**confirmation("JO-1"), **change}
    body = {key: value for key, value in merged.items() if value is not None}

    answer = await api.post("/api/v1/confirmations", headers=AUTH, json=body)

    assert answer.status_code == 422
    assert names in answer.text
    assert await business_messages(agent) == []


async def test_a_body_that_is_not_json_is_422(agent: Agent, api: httpx.AsyncClient) -> None:
    answer = await api.post(
        "/api/v1/confirmations",
        headers={**AUTH, "Content-Type": "application/json"},
        content=b"{not json",
    )

    assert answer.status_code == 422
    assert await business_messages(agent) == []


async def test_a_full_outbox_is_503_with_retry_after_and_nothing_is_stored(tmp_path: Path) -> None:
    async with (
        attached(config(tmp_path / "store.db", max_size=300)) as agent,
        client(agent) as api,
    ):
        answer = await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation())

        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) > 0
        assert "outbox is full" in answer.json()["detail"]
        assert agent.store is not None
        assert (await agent.store.outbox.stats()).depth == 0

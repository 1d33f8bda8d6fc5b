"""The MES retrying a post (the most common fault there is) through the real API server and a
real Mosquitto: HQ receives one message, the retry gets the first answer, also after the agent
restarted; a key reused for other content is refused; an order HQ never sent is flagged."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, ApiConfig
from plantsync.tools.localbroker import Mosquitto
from tests.api.support import AUTH, TOKEN, confirmation
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config

pytestmark = pytest.mark.slow

START, END = "2026-11-25T05:00:00Z", "2026-11-25T06:00:00Z"


def _config(store: Path, broker: Mosquitto) -> AgentConfig:
    base = business_config(store, broker, None)
    return base.model_copy(update={"api": ApiConfig(port=0, token=SecretStr(TOKEN))})


def _confirmation(order_id: str, confirmation_id: str, **overrides: Any) -> dict[str, Any]:
    return confirmation(
        order_id,
        confirmation_id=confirmation_id,
        actual_start=START,
        actual_end=END,
        **overrides,
    )


@contextlib.asynccontextmanager
async def _api(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
    base = f"http://127.0.0.1:{agent.api_port}"
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as client:
        yield client


def _confirmations(hub: HubRecorder, confirmation_id: str) -> list[dict[str, Any]]:
    return [
        m
        for m in hub.business
        if m["type"] == "production.confirmation"
        and m["payload"]["confirmation_id"] == confirmation_id
    ]


async def _after_a_sentinel(api: httpx.AsyncClient, hub: HubRecorder, order_id: str) -> None:
    """Wait until a new confirmation of ``order_id`` reached HQ: the business lane is one queue
    per store, so anything committed before it has reached HQ too."""
    sentinel = f"sentinel-{len(hub.business)}"
    answer = await api.post("/api/v1/confirmations", json=_confirmation(order_id, sentinel))
    assert answer.status_code == 202
    await hub.wait_for(lambda: bool(_confirmations(hub, sentinel)), within=30)


async def test_a_retried_confirmation_reaches_hq_once_also_after_a_restart(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = _config(tmp_path / "store.db", broker)
    body = _confirmation("JO-1", "C-1")
    async with recording(broker.url) as hub:
        async with running_agent(config) as agent, _api(agent) as api:
            first = await api.post("/api/v1/confirmations", json=body)
            retry = await api.post("/api/v1/confirmations", json=body)
            await hub.wait_for(lambda: bool(_confirmations(hub, "C-1")), within=30)
        async with running_agent(config) as agent, _api(agent) as api:
            after_restart = await api.post("/api/v1/confirmations", json=body)
            await _after_a_sentinel(api, hub, "JO-1")

    (message,) = _confirmations(hub, "C-1")
    assert (first.status_code, retry.status_code, after_restart.status_code) == (202, 200, 200)
    assert first.json() == retry.json() == after_restart.json() == {"message_id": message["id"]}
    assert after_restart.headers["Idempotent-Replayed"] == "true"


async def test_a_key_reused_for_other_content_is_409_and_hq_hears_only_the_first(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = _config(tmp_path / "store.db", broker)
    async with recording(broker.url) as hub, running_agent(config) as agent, _api(agent) as api:
        first = await api.post("/api/v1/confirmations", json=_confirmation("JO-1", "C-1"))
        other = await api.post(
            "/api/v1/confirmations",
            json=_confirmation("JO-1", "C-1", scrap_quantity={"value": "7", "unit": "pcs"}),
        )
        await _after_a_sentinel(api, hub, "JO-1")

    assert (first.status_code, other.status_code) == (202, 409)
    assert 'scrap_quantity.value was "5", is "7" now' in other.json()["detail"]
    (message,) = _confirmations(hub, "C-1")
    assert message["payload"]["scrap_quantity"]["value"] == "5"


async def test_a_confirmation_for_an_order_hq_never_sent_reaches_hq_flagged_unplanned(
    broker: Mosquitto, tmp_path: Path
) -> None:
    config = _config(tmp_path / "store.db", broker)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent, _api(agent) as api:
        release = await hq.release(order("JO-1"))
        await hub.wait_for(lambda: "applied" in outcomes(hub, release["id"]), within=30)
        planned = await api.post("/api/v1/confirmations", json=_confirmation("JO-1", "C-1"))
        unplanned = await api.post("/api/v1/confirmations", json=_confirmation("JO-9", "C-9"))
        await hub.wait_for(lambda: bool(_confirmations(hub, "C-9")), within=30)
        await hub.wait_for(lambda: bool(_confirmations(hub, "C-1")), within=30)

    assert (planned.status_code, unplanned.status_code) == (202, 202)
    assert _confirmations(hub, "C-1")[0]["payload"]["unplanned"] is False
    assert _confirmations(hub, "C-9")[0]["payload"]["unplanned"] is True

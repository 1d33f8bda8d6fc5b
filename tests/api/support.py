"""What the API tests share: an agent over a real SQLite store without links, a client that
talks to its app in-process, and HQ's down messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import ByteSize, SecretStr

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkHealth
from plantsync.agent.uplink import Uplink
from plantsync.app import build_agent
from plantsync.buffer.base import Claimed
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig, ApiConfig, HubConfig, SiteConfig, StoreConfig
from plantsync.contracts import new_message_id
from plantsync.drivers.localschedule import LocalScheduleSink
from plantsync.web.api import create_app
from plantsync.web.metrics import AgentMetrics
from plantsync.web.view import AgentView, DownlinkCommands, PipelineView, PlantMessages

SITE = "plant-01"
TOKEN = "api-t0ken-for-the-tests-4711"  # noqa: S105 - a test value that must never be echoed
HUB_PASSWORD = "hub-s3cret-Pa55-never-shown"  # noqa: S105 - a test value
DOWN_TOPIC = f"plantsync/v1/{SITE}/down/schedule"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def config(
    store: Path, *, host: str = "127.0.0.1", token: str | None = TOKEN, max_size: int = 1 << 26
) -> AgentConfig:
    return AgentConfig(
        site=SiteConfig(id=SITE),
        hub=HubConfig(
            url="mqtt://127.0.0.1:1", username="plant-01", password=SecretStr(HUB_PASSWORD)
        ),
        store=StoreConfig(path=store, max_size=ByteSize(max_size)),
        api=ApiConfig(host=host, port=0, token=SecretStr(token) if token else None),
    )


@contextlib.asynccontextmanager
async def attached(config: AgentConfig) -> AsyncIterator[Agent]:
    """An Agent whose store is open and whose downlink and business writer exist, as while
    it runs, but with no link: what the local API needs."""
    agent = build_agent(config, config_hash="cafe12345678")
    async with await Store.open(
        config.store.path, max_size_bytes=int(config.store.max_size)
    ) as store:
        await agent.attach(store, asyncio.Event())
        yield agent


@dataclass
class ViewOf:
    """An ``AgentView`` that is not the Agent: the Agent's attributes of today, and a
    ``correlation_of`` that answers from ``correlations`` (as a store would), not from the
    metrics. What the web needs of an agent, and nothing of the Agent class."""

    agent: Agent
    correlations: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> AgentConfig:
        return self.agent.config

    @property
    def config_hash(self) -> str:
        return self.agent.config_hash

    @property
    def started_at(self) -> datetime:
        return self.agent.started_at

    @property
    def uptime_seconds(self) -> float:
        return self.agent.uptime_seconds

    @property
    def health(self) -> Mapping[str, LinkHealth]:
        return self.agent.health

    @property
    def store(self) -> Store | None:
        return self.agent.store

    @property
    def downlink(self) -> DownlinkCommands | None:
        return self.agent.downlink

    @property
    def business(self) -> PlantMessages | None:
        return self.agent.business

    @property
    def pipeline(self) -> PipelineView | None:
        return self.agent.pipeline

    @property
    def uplink(self) -> Uplink | None:
        return self.agent.uplink

    async def correlation_of(self, order_id: str) -> str | None:
        return self.correlations.get(order_id)


def metrics_of(view: AgentView) -> AgentMetrics:
    """The registry the agent behind ``view`` reports to (its observer, from ``build_agent``)."""
    agent = view.agent if isinstance(view, ViewOf) else view
    assert isinstance(agent, Agent)
    observer = agent.parts.observer
    assert isinstance(observer, AgentMetrics)
    return observer


def client(agent: AgentView, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(agent, metrics_of(agent)))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{host}", timeout=10)


def parts(agent: Agent) -> Store:
    assert agent.store is not None
    assert agent.downlink is not None
    assert agent.business is not None
    return agent.store


async def apply_pending(agent: Agent) -> None:
    """Let the downlink decide and apply what is pending, into the agent's own schedule."""
    store = parts(agent)
    assert agent.downlink is not None
    running = asyncio.create_task(agent.downlink.run(LocalScheduleSink(), LinkHealth("plant")))
    try:
        async with asyncio.timeout(10):
            while (await store.inbox.inbox_stats()).pending:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.01)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def business_messages(agent: Agent) -> list[dict[str, Any]]:
    """Every business message in the outbox, decoded (claimed: the test owns the outbox)."""
    claimed: list[Claimed] = await parts(agent).outbox.begin(10_000)
    messages = [json.loads(row.record.payload) for row in claimed]
    await parts(agent).outbox.nack([row.row_id for row in claimed])
    return messages


def order(
    order_id: str,
    revision: int = 1,
    *,
    starts_in: timedelta = timedelta(days=2),
    work_center: str = "line-1",
    priority: int = 10,
) -> dict[str, Any]:
    start = datetime.now(UTC) + starts_in
    return {
        "order_id": order_id,
        "revision": revision,
        "product_id": "PRD-100",
        "quantity": {"value": "100", "unit": "pcs"},
        "work_center": work_center,
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=2)).isoformat(),
        "priority": priority,
        "request_state": "Released",
    }


def down(
    message_type: str, seq: int, *orders: dict[str, Any], site: str = SITE
) -> tuple[str, bytes]:
    """A down message as HQ publishes it: its id and its bytes."""
    message_id = new_message_id()
    message = {
        "id": message_id,
        "type": message_type,
        "schema_version": 1,
        "site": site,
        "source": "hq:planning",
        "stream": "schedule",
        "seq": seq,
        "event_time": datetime.now(UTC).isoformat(),
        "correlation_id": f"plan-{seq}",
        "payload": {"orders": list(orders)},
    }
    return message_id, json.dumps(message).encode()


def confirmation(order_id: str = "JO-1", **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "confirmation_id": f"{order_id}-c1",
        "order_id": order_id,
        "revision": 1,
        "good_quantity": {"value": "95", "unit": "pcs"},
        "scrap_quantity": {"value": "5", "unit": "pcs"},
        "actual_start": (now - timedelta(hours=1)).isoformat(),
        "actual_end": now.isoformat(),
        "final": True,
    }
    body.update(overrides)
    return body

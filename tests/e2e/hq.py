"""HQ's side of the business loop in the end-to-end tests: down messages with a per-site
sequence, published to the real broker, and questions about the acks that came back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plantsync.config.model import HubConfig
from plantsync.contracts import new_message_id
from plantsync.drivers.mqtt import HubConnection
from tests.contracts.examples import down_message
from tests.e2e.support import SITE, HubRecorder


def order(
    order_id: str,
    revision: int = 1,
    *,
    starts_in: timedelta = timedelta(days=2),
    quantity: str = "100",
    work_center: str = "line-1",
) -> dict[str, Any]:
    start = datetime.now(UTC) + starts_in
    return {
        "order_id": order_id,
        "revision": revision,
        "product_id": "PRD-100",
        "quantity": {"value": quantity, "unit": "pcs"},
        "work_center": work_center,
        "equipment_id": "press-1",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=2)).isoformat(),
        "priority": 10,
        "request_state": "Released",
    }


@dataclass
class Hq:
    """Publishes a site's down messages, numbering them 1, 2, 3 … as HQ must."""

    broker_url: str
    seq: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)

    def message(self, message_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        message_id = new_message_id()
        return down_message(
            message_type,
            id=message_id,
            site=SITE,
            seq=self.seq,
            event_time=datetime.now(UTC).isoformat(),
            correlation_id=f"plan-{message_id[:8]}",
            payload=payload,
        )

    async def publish(self, message: dict[str, Any] | bytes, topic: str = "schedule") -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        hub = HubConfig(url=self.broker_url)
        async with HubConnection(hub, client_id="hq-publisher", clean_start=True) as link:
            await link.publish(f"plantsync/v1/{SITE}/down/{topic}", payload, qos=1)

    async def release(self, *orders: dict[str, Any]) -> dict[str, Any]:
        message = self.message("schedule.release", {"orders": list(orders)})
        await self.publish(message)
        return message


def acks(hub: HubRecorder, original_id: str) -> list[dict[str, Any]]:
    """The payloads of every schedule.ack about ``original_id``, in arrival order."""
    return [
        message["payload"]
        for message in hub.business
        if message["type"] == "schedule.ack" and message["payload"]["original_id"] == original_id
    ]


def outcomes(hub: HubRecorder, original_id: str) -> list[str]:
    return [ack["outcome"] for ack in acks(hub, original_id)]

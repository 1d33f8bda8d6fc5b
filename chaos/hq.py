"""HQ's publishing side: steady schedule changes down to the site, and snapshots on resync.

HQ numbers the site's down messages 1, 2, 3 … and sends each until the broker acknowledges it
(PUBACK), reconnecting as often as it takes: HQ is at-least-once too. It remembers the latest
revision of every order, which is what the plant must end up with, and answers every
``resync.request`` (the agent lost its session, or saw a gap) with a ``schedule.snapshot`` of
all orders at their latest revision.

HQ runs at most ``max_ahead`` revisions ahead of what the plant has in effect (``in_effect``,
the MES's record): a closed loop. On a quiet machine the agent keeps up and the window never
closes; on a loaded one (or while the agent is down) HQ holds back new changes instead of piling
up a backlog that the final drain, one MES request per revision, could not apply in bounded time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plantsync.config.model import HubConfig
from plantsync.contracts import new_message_id
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable, LinkMisconfigured

_SEND_TIMEOUT = 3.0


@dataclass(frozen=True)
class DownRecord:
    """A down message the broker acknowledged."""

    message_id: str
    seq: int
    message_type: str
    orders: tuple[tuple[str, int], ...]


@dataclass
class Hq:
    """Publishes a site's schedule changes; see the module docstring."""

    broker_url: str
    site: str
    rng: random.Random
    max_orders: int = 30
    prefix: str = "plantsync/v1"
    seq: int = 0
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Order id → the order at its latest revision, as HQ last sent it."""
    published: list[DownRecord] = field(default_factory=list)
    resyncs_answered: int = 0
    resync_wanted: asyncio.Event = field(default_factory=asyncio.Event)
    in_effect: Callable[[], dict[str, int]] | None = None
    """Order id → the revision in effect at the plant; with ``max_ahead``, the window."""
    max_ahead: int | None = None
    held_back: int = 0
    """Turns on which HQ had a change to send but the window was closed."""
    _link: HubConnection | None = None

    @property
    def topic(self) -> str:
        return f"{self.prefix}/{self.site}/down/schedule"

    def latest_revisions(self) -> dict[str, int]:
        return {order_id: int(order["revision"]) for order_id, order in self.orders.items()}

    async def run(self, producing: asyncio.Event, interval: float) -> None:
        """One change every ``interval`` seconds while ``producing`` is set; snapshots always.
        Ends when cancelled."""
        try:
            while True:
                if self.resync_wanted.is_set():
                    self.resync_wanted.clear()
                    await self._send(self._snapshot())
                    self.resyncs_answered += 1
                elif producing.is_set() and self._window_open():
                    await self._send(self._next_change())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval * self.rng.uniform(0.5, 1.5)):
                        await self.resync_wanted.wait()
        finally:
            await self._close()

    def revisions_ahead(self) -> int:
        """Revisions HQ published that are not yet in effect at the plant (0 without
        ``in_effect``)."""
        if self.in_effect is None:
            return 0
        applied = self.in_effect()
        latest = self.latest_revisions()
        return sum(max(0, revision - applied.get(order, 0)) for order, revision in latest.items())

    def _window_open(self) -> bool:
        if self.max_ahead is None or self.revisions_ahead() < self.max_ahead:
            return True
        self.held_back += 1
        return False

    def _next_change(self) -> dict[str, Any]:
        if len(self.orders) < self.max_orders and (not self.orders or self.rng.random() < 0.3):
            order = _order(f"CH-{len(self.orders) + 1:04d}")
            self.orders[order["order_id"]] = order
            return self._message("schedule.release", {"orders": [order]})
        order_id = self.rng.choice(sorted(self.orders))
        current = self.orders[order_id]
        revision = int(current["revision"]) + 1
        revised = {**current, "revision": revision, "quantity": _quantity(revision)}
        self.orders[order_id] = revised
        return self._message("schedule.revision", {"orders": [revised]})

    def _snapshot(self) -> dict[str, Any]:
        payload = {"orders": list(self.orders.values()), "as_of_seq": self.seq}
        return self._message("schedule.snapshot", payload)

    def _message(self, message_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.seq += 1
        message_id = new_message_id()
        return {
            "id": message_id,
            "type": message_type,
            "schema_version": 1,
            "site": self.site,
            "source": "hq:chaos",
            "stream": "schedule",
            "seq": self.seq,
            "event_time": datetime.now(UTC).isoformat(),
            "correlation_id": f"chaos-{message_id[-12:]}",
            "payload": payload,
        }

    async def _send(self, message: dict[str, Any]) -> None:
        """Publish until PUBACK; each attempt bounded, retried until the caller cancels."""
        payload = json.dumps(message).encode()
        while True:
            try:
                link = await self._connected()
                async with asyncio.timeout(_SEND_TIMEOUT):
                    await link.publish(self.topic, payload, qos=1)
                break
            except (HubUnavailable, LinkMisconfigured, TimeoutError):
                await self._close()
                await asyncio.sleep(0.3)
        orders = tuple((o["order_id"], int(o["revision"])) for o in message["payload"]["orders"])
        self.published.append(DownRecord(message["id"], message["seq"], message["type"], orders))

    async def _connected(self) -> HubConnection:
        if self._link is None or self._link.closed:
            await self._close()
            hub = HubConfig(
                url=self.broker_url,
                topic_prefix=self.prefix,
                connect_timeout=timedelta(seconds=3),
                keepalive=timedelta(seconds=5),
            )
            link = HubConnection(hub, client_id="chaos-hq-publisher", clean_start=True)
            await link.__aenter__()
            self._link = link
        return self._link

    async def _close(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            with contextlib.suppress(HubUnavailable):
                await link.__aexit__(None, None, None)


def _order(order_id: str) -> dict[str, Any]:
    start = datetime.now(UTC) + timedelta(days=2)
    return {
        "order_id": order_id,
        "revision": 1,
        "product_id": "PRD-100",
        "quantity": {"value": _quantity(1)["value"], "unit": "pcs"},
        "work_center": "line-1",
        "equipment_id": "press-1",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=2)).isoformat(),
        "priority": 10,
        "request_state": "Released",
    }


def _quantity(revision: int) -> dict[str, str]:
    return {"value": str(100 + revision), "unit": "pcs"}

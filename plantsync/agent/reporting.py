"""Plant events (job order states, job responses) reported to HQ as order status and
production confirmations.

    Job Control server ─events()─▶ PlantEventReporter ─▶ BusinessWriter ─▶ outbox (order/<id>)
                                          ▲
                          correlation_of(order_id): the store's last-known-good schedule

A driver repeats each order's current state and latest confirmation after every reconnect; the
reporter drops an event equal to the last one it wrote for that order, so HQ does not see the
same state twice in a row from one agent run. Across restarts, a confirmation is written once
per ``confirmation_id`` (the driver's id names the response and its quantities): its key is
kept in the store (``ClientKey`` ``plant:confirmation_id``), so the repeat after a restart
is not sent again. A repeated order status after a restart can still reach HQ (its
``changed_at`` is the moment it was read, so two reads are not the same report).

Each event carries the correlation id of the schedule that applied its order. The store keeps it
with the order (``OrderState.correlation_id``), written in the transaction that applied it, so
a confirmation reported after a restart still names the schedule it answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from plantsync.agent.business import BusinessWriter, ClientKey
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.drivers.base import PlantEvents

log = logging.getLogger(__name__)

PLANT_CONFIRMATION = "plant:confirmation_id"
"""The kind of key a confirmation read from the plant system is kept under."""

OnConfirmed = Callable[[bool], None]
"""Called once a confirmation is committed for HQ, with its ``final``; for metrics, must not
block."""


class Correlations(Protocol):
    """Where an order's correlation id is found: the store's inbox (``Inbox.correlation_of``)."""

    async def correlation_of(self, order_id: str) -> str | None:
        """The correlation id of the schedule that last applied ``order_id``, if known."""
        ...


class PlantEventReporter:
    """Writes each new plant event once; remembers the last one per order."""

    def __init__(
        self,
        business: BusinessWriter,
        correlations: Correlations,
        *,
        on_confirmed: OnConfirmed | None = None,
    ) -> None:
        self._business, self._correlations = business, correlations
        self._on_confirmed = on_confirmed
        self._last: dict[tuple[str, str], object] = {}

    async def report(self, source: str, plant: PlantEvents) -> None:
        """Until the plant link drops (SourceUnavailable), commit every new event."""
        async for event in plant.events():
            await self._write(source, event)

    async def _write(self, source: str, event: OrderStatus | ProductionConfirmation) -> None:
        kind = "status" if isinstance(event, OrderStatus) else "confirmation"
        latest = (kind, event.order_id)
        fingerprint = _fingerprint(event)
        if self._last.get(latest) == fingerprint:
            return
        correlation_id = await self._correlations.correlation_of(event.order_id)
        if isinstance(event, OrderStatus):
            await self._business.order_status(event, source=source, correlation_id=correlation_id)
        else:
            key = ClientKey(PLANT_CONFIRMATION, event.confirmation_id, compare=False)
            written = await self._business.confirmation(
                event, source=source, correlation_id=correlation_id, key=key
            )
            self._last[latest] = fingerprint
            if written.replayed is not None:
                log.debug("confirmation %s was reported before a restart", event.confirmation_id)
                return
            if self._on_confirmed is not None:
                self._on_confirmed(event.final)
        self._last[latest] = fingerprint
        log.info("order %s %s reported to HQ", event.order_id, kind)


def _fingerprint(event: OrderStatus | ProductionConfirmation) -> object:
    if isinstance(event, OrderStatus):
        return (event.state, event.revision)
    return (event.confirmation_id, event.good_quantity, event.scrap_quantity, event.final)

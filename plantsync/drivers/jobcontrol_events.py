"""What a Job Control server reports, turned into events: the diff of two list values.

    JobOrderList ─────────▶ changed (state, revision) of a job order ─▶ OrderStatus
    JobOrderResponseList ─▶ changed (good, scrap, final) of a response ─▶ ProductionConfirmation
                               │
                               ▼
           LiveQueue (common.opcua): bounded, drop oldest, ``dropped`` counts ─▶ events()

The server sends whole lists; the first value of each after subscribing yields every job order's
state and every started order's confirmation, so a session that starts after an outage reports
where each order is, whatever happened meanwhile. A list repeats every entry that did not change,
word for word, so ``Entries`` parses only the texts it has not seen in the value before: a change
costs one parse, not one per job order the server holds (docs/performance.md, roundtrip).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Generic, TypeVar

from pydantic import ValidationError

from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.drivers import isa95
from plantsync.drivers.common.opcua import LiveQueue

_logger = logging.getLogger(__name__)

Event = OrderStatus | ProductionConfirmation
_Model = TypeVar("_Model", isa95.ISA95JobOrderAndStateDataType, isa95.ISA95JobResponseDataType)


class ListDiff:
    """One session's list values turned into events, put on ``events`` in the order the server
    reported them: what changed since the value before."""

    def __init__(self, link: str, events: LiveQueue[Event]) -> None:
        self._events = events
        self._states: dict[str, tuple[str, int]] = {}
        self._responses: dict[str, tuple[str, str, bool]] = {}
        self._job_orders = Entries(isa95.ISA95JobOrderAndStateDataType, link)
        self._job_responses = Entries(isa95.ISA95JobResponseDataType, link)

    def job_order_list(self, value: list[str], at: datetime) -> None:
        """A new JobOrderList value: one OrderStatus per job order whose state changed."""
        seen: dict[str, tuple[str, int]] = {}
        for entry in self._job_orders.parse(value):
            job_order_id = entry.JobOrder.JobOrderID
            seen[job_order_id] = (entry.State[0].StateText, entry.JobOrder.revision)
            if self._states.get(job_order_id) != seen[job_order_id]:
                status = isa95.order_status(entry, at)
                if status is not None:
                    self._events.put(status)
        self._states = seen  # a cancelled or cleared order is gone; stored again, it is new

    def job_order_response_list(self, value: list[str], at: datetime) -> None:
        """A new JobOrderResponseList value: one confirmation per response that progressed."""
        seen: dict[str, tuple[str, str, bool]] = {}
        for response in self._job_responses.parse(value):
            confirmation = isa95.confirmation(response, at)
            if confirmation is None:
                continue
            key = response.JobResponseID
            seen[key] = (
                str(confirmation.good_quantity.value),
                str(confirmation.scrap_quantity.value),
                confirmation.final,
            )
            if self._responses.get(key) != seen[key]:
                self._events.put(confirmation)
        self._responses = seen


class Entries(Generic[_Model]):
    """One list's entries parsed, each text once: the texts of the last value are kept with
    their models (frozen, so shared safely), and a text not in it is parsed. An entry that does
    not parse is left out (logged at debug)."""

    def __init__(self, model: type[_Model], link: str) -> None:
        self._model: type[_Model] = model
        self._link = link
        self._parsed: dict[str, _Model] = {}

    def parse(self, value: list[str]) -> list[_Model]:
        previous, self._parsed = self._parsed, {}
        entries: list[_Model] = []
        for text in value:
            entry = self._parsed.get(text) or previous.get(text) or self._validate(text)
            if entry is not None:
                self._parsed[text] = entry
                entries.append(entry)
        return entries

    def _validate(self, text: str) -> _Model | None:
        try:
            return self._model.model_validate_json(text)
        except ValidationError as exc:
            _logger.debug("opcua %s: %s not read: %s", self._link, self._model.__name__, exc)
            return None

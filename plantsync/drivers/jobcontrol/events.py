"""What a Job Control server reports, turned into events: the diff of two list values.

    JobOrderList ─────────▶ changed (state, revision) of a job order ─▶ OrderStatus
    JobOrderResponseList ─▶ changed (good, scrap, final) of a response ─▶ ProductionConfirmation
                               │
                               ▼
           LiveQueue (common.opcua): bounded, drop oldest, ``dropped`` counts ─▶ events()

The server sends whole lists; the first value of each after subscribing yields every job order's
state and every started order's confirmation, so a session that starts after an outage reports
where each order is, whatever happened meanwhile. A list repeats every entry that did not change,
so ``Entries`` decodes only the entries that differ from the value before: a change costs one
decode, not one per job order the server holds (docs/performance.md, roundtrip). ``held`` is
the last JobOrderList value decoded: the sink plans from it instead of reading the list again.
asyncua's structure classes are unhashable dataclasses, so the cache is keyed by the entry's id
and an entry is reused when it compares equal, field by field, to the one it replaces.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.drivers.common.opcua import LiveQueue
from plantsync.drivers.jobcontrol import codec, isa95

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
        self._job_orders = Entries(codec.decode_job_order_and_state, job_order_id, link)
        self._job_responses = Entries(codec.decode_job_response, _job_response_id, link)
        self.held: dict[str, isa95.ISA95JobOrderAndStateDataType] | None = None
        """The job orders of the last JobOrderList value, by id; None before the first."""

    def job_order_list(self, value: list[Any], at: datetime) -> None:
        """A new JobOrderList value: one OrderStatus per job order whose state changed."""
        seen: dict[str, tuple[str, int]] = {}
        held: dict[str, isa95.ISA95JobOrderAndStateDataType] = {}
        for entry in self._job_orders.parse(value):
            job_order_id = entry.JobOrder.JobOrderID
            held[job_order_id] = entry
            seen[job_order_id] = (entry.State[0].StateText, entry.JobOrder.revision)
            if self._states.get(job_order_id) != seen[job_order_id]:
                status = isa95.order_status(entry, at)
                if status is not None:
                    self._events.put(status)
        self._states = seen  # a cancelled or cleared order is gone; stored again, it is new
        self.held = held

    def job_order_response_list(self, value: list[Any], at: datetime) -> None:
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
    """One list's entries decoded, each once: the entries of the last value are kept with their
    views (frozen, so shared safely), by id; an entry not equal to the kept one is decoded. An
    entry that does not decode is left out (logged at debug)."""

    def __init__(
        self, decode: Callable[[Any], _Model], key: Callable[[Any], str], link: str
    ) -> None:
        self._decode: Callable[[Any], _Model] = decode
        self._key: Callable[[Any], str] = key
        self._link = link
        self._decoded: dict[str, tuple[Any, _Model]] = {}

    def parse(self, value: list[Any]) -> list[_Model]:
        previous, self._decoded = self._decoded, {}
        entries: list[_Model] = []
        for raw in value:
            try:
                key = self._key(raw)
            except AttributeError:
                continue  # not the structure this list holds
            kept = previous.get(key)
            entry = kept[1] if kept is not None and kept[0] == raw else self._validate(raw)
            if entry is not None:
                self._decoded[key] = (raw, entry)
                entries.append(entry)
        return entries

    def _validate(self, raw: Any) -> _Model | None:
        try:
            return self._decode(raw)
        except (AttributeError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
            _logger.debug("opcua %s: list entry not read: %s", self._link, exc)
            return None


def job_order_id(entry: Any) -> str:
    """The key of a JobOrderList entry."""
    return str(entry.JobOrder.JobOrderID)


def _job_response_id(response: Any) -> str:
    return str(response.JobResponseID)

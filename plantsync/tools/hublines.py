"""One readable line per hub message, for people watching a live hub (``plantsync hub tail``):

  12:03:04.512 plant-01 machine.state machine/press-1 #42 speed=12.5 state=Executing
  12:03:05.001 plant-01 status online 0.1.0 (connected)
  12:03:05.120 plant-01 schedule.ack acks #3 applied JO-4711@2 (re: 0193a1c2-…)
  12:03:05.230 plant-01 production.confirmation order/JO-4711 #2 good=598.250 kg scrap=1.75 kg final
  12:03:05.301 plantsync/v1/plant-01/other <17 bytes>

Anything that is not a plantsync message gets the raw fallback line (topic and size): the tool
is for looking at a live hub, so it never fails on what it reads.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from plantsync.contracts import (
    OrderMessage,
    OrderStatusMessage,
    ProductionConfirmationMessage,
    Quantity,
    ResyncRequestMessage,
    ScheduleAck,
    ScheduleAckMessage,
)

_MAX_VALUE_CHARS = 40
_MAX_REASON_CHARS = 80
_UP_MESSAGE: TypeAdapter[OrderMessage] = TypeAdapter(OrderMessage)


def format_message(topic: str, payload: bytes) -> str:
    """One line for a message from the hub, prefixed with the local time it is printed."""
    return f"{clock()} {describe(topic, payload)}"


def clock() -> str:
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]  # a console reads local time


def describe(topic: str, payload: bytes) -> str:
    """The message without the time: an envelope, a site status, or ``topic <n bytes>``."""
    document = _json_object(payload)
    if document is not None:
        if document.get("type") == "site.status":
            line = _status_line(document)
        elif isinstance(document.get("payload"), dict) and isinstance(document.get("type"), str):
            line = _business_line(document) or _envelope_line(document)
        else:
            line = None
        if line is not None:
            return line
    return f"{topic} <{len(payload)} bytes>"


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _status_line(document: dict[str, Any]) -> str | None:
    site, state = document.get("site"), document.get("state")
    if not isinstance(site, str) or not isinstance(state, str):
        return None
    reason = document.get("reason")
    line = f"{site} status {state} {document.get('version', '?')}"
    return f"{line} ({reason})" if isinstance(reason, str) else line


def _business_line(document: dict[str, Any]) -> str | None:
    """Acks, order status, confirmations and resync requests, read through their models; None
    for anything else, or one that does not validate (it gets the generic line)."""
    if document["type"] not in _UP_SUMMARIES:
        return None
    try:
        message = _UP_MESSAGE.validate_python(document)
    except ValidationError:
        return None
    head = f"{message.site} {message.type} {message.stream} #{message.seq}"
    if message.historical:
        head += " (historical)"
    return f"{head} {_UP_SUMMARIES[message.type](message)}"


def ack_summary(ack: ScheduleAck, *, reason_chars: int | None = None) -> str:
    """``outcome [reason_code] [order@revision …] ["reason"]`` of one acknowledgement."""
    parts = [ack.outcome.value]
    if ack.reason_code is not None:
        parts.append(ack.reason_code.value)
    parts.extend(f"{order.order_id}@{order.revision}" for order in ack.orders)
    if ack.reason:
        reason = ack.reason if reason_chars is None else _clip(ack.reason, reason_chars)
        parts.append(json.dumps(reason, ensure_ascii=False))
    return " ".join(parts)


def _ack(message: OrderMessage) -> str:
    assert isinstance(message, ScheduleAckMessage)
    summary = ack_summary(message.payload, reason_chars=_MAX_REASON_CHARS)
    return f"{summary} (re: {message.payload.original_id})"


def _order_status(message: OrderMessage) -> str:
    assert isinstance(message, OrderStatusMessage)
    status = message.payload
    parts = [f"{status.order_id}@{status.revision}", status.state.value]
    if status.request_state is not None:
        parts.append(f"request={status.request_state.value}")
    if status.equipment_id is not None:
        parts.append(f"on {status.equipment_id}")
    if status.unplanned:
        parts.append("unplanned")
    return " ".join(parts)


def _confirmation(message: OrderMessage) -> str:
    assert isinstance(message, ProductionConfirmationMessage)
    confirmation = message.payload
    good, scrap = _quantity(confirmation.good_quantity), _quantity(confirmation.scrap_quantity)
    unplanned = " unplanned" if confirmation.unplanned else ""
    return f"good={good} scrap={scrap} {'final' if confirmation.final else 'partial'}{unplanned}"


def _quantity(quantity: Quantity) -> str:
    return f"{quantity.value:f} {quantity.unit}"


def _resync(message: OrderMessage) -> str:
    assert isinstance(message, ResyncRequestMessage)
    request = message.payload
    line = f"{request.reason.value}: last seq seen {request.last_seq_seen}"
    return line if request.received_seq is None else f"{line}, received {request.received_seq}"


_UP_SUMMARIES = {
    "schedule.ack": _ack,
    "order.status": _order_status,
    "production.confirmation": _confirmation,
    "resync.request": _resync,
}


def _envelope_line(document: dict[str, Any]) -> str:
    parts = [str(document.get("site", "?")), str(document["type"])]
    if "stream" in document:
        parts.append(str(document["stream"]))
    if "seq" in document:
        parts.append(f"#{document['seq']}")
    if document.get("historical") is True:
        parts.append("(historical)")
    parts.append(_payload_summary(document["payload"]))
    return " ".join(part for part in parts if part)


def _payload_summary(payload: dict[str, Any]) -> str:
    """``tag=value`` pairs for machine.state; else the payload's top-level scalar fields and,
    for schedules, ``order@revision`` of each order."""
    values = payload.get("values")
    if isinstance(values, list) and all(isinstance(item, dict) for item in values):
        pairs = [(str(item.get("tag", "?")), item.get("value")) for item in values]
        if payload.get("kind") == "snapshot":
            pairs.insert(0, ("kind", "snapshot"))
        return " ".join(f"{key}={_short(value)}" for key, value in pairs)
    words = [
        f"{key}={_short(value)}"
        for key, value in payload.items()
        if not isinstance(value, dict | list)
    ]
    orders = payload.get("orders")
    if isinstance(orders, list):
        words.extend(
            f"{_short(order.get('order_id'))}@{_short(order.get('revision'))}"
            for order in orders
            if isinstance(order, dict)
        )
    return " ".join(words)


def _short(value: object) -> str:
    return _clip(value if isinstance(value, str) else json.dumps(value), _MAX_VALUE_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

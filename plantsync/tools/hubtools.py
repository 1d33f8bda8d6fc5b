"""Tools for the HQ side of the hub: ``plantsync hub tail`` and ``plantsync hub publish``.

``tail`` prints one readable line per message under ``<prefix>/<site>/#`` (or every site):

  12:03:04.512 plant-01 machine.state machine/press-1 #42 speed=12.5 state=Executing
  12:03:05.001 plant-01 status online 0.1.0 (connected)
  12:03:05.120 plant-01 schedule.ack acks #3 applied JO-4711@2 (re: 0193a1c2-…)
  12:03:05.230 plant-01 production.confirmation order/JO-4711 #2 good=598.250 kg scrap=1.75 kg final
  12:03:05.301 plantsync/v1/plant-01/other <17 bytes>

Anything that is not a plantsync message gets the raw fallback line (topic and size): the tool
is for looking at a live hub, so it never fails on what it reads.

``publish`` sends one down message from a file and waits for the site's acknowledgements:

    read file ─▶ fill the envelope ─▶ validate (the agent's parser) ─▶ SUBSCRIBE up/ack
        ─▶ PUBLISH down/schedule (QoS 1) ─▶ PUBACK: record seq ─▶ print acks until a final one

A final outcome is one after which no further ack for the message is due: ``applied``,
``rejected``, ``failed``, ``waiting-for-approval`` (a planner decides, maybe hours later; the
later ack shows in ``hub tail``) and the ``duplicate`` answer to an id the site already had.
``accepted`` and ``pending`` are steps on the way, so the tool keeps waiting after them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TextIO

from pydantic import TypeAdapter, ValidationError

from plantsync.config.model import HubConfig
from plantsync.contracts import (
    SCHEDULE_STREAM,
    SCHEDULE_VERSION,
    AckOutcome,
    OrderMessage,
    OrderStatusMessage,
    ProductionConfirmationMessage,
    Quantity,
    ReasonCode,
    ResyncRequestMessage,
    ScheduleAck,
    ScheduleAckMessage,
    Topics,
    new_message_id,
    parse_down_message,
    utc_isoformat,
)
from plantsync.drivers.hub import Hub
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable

_MAX_VALUE_CHARS = 40
_MAX_REASON_CHARS = 80
_UP_MESSAGE: TypeAdapter[OrderMessage] = TypeAdapter(OrderMessage)

FINAL_OUTCOMES = frozenset(
    {AckOutcome.APPLIED, AckOutcome.REJECTED, AckOutcome.FAILED, AckOutcome.WAITING_FOR_APPROVAL}
)
"""Outcomes that end ``hub publish``'s wait (besides the ``duplicate`` answer)."""


def format_message(topic: str, payload: bytes) -> str:
    """One line for a message from the hub, prefixed with the local time it is printed."""
    return f"{_clock()} {describe(topic, payload)}"


def _clock() -> str:
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
    return " ".join(parts)


def _confirmation(message: OrderMessage) -> str:
    assert isinstance(message, ProductionConfirmationMessage)
    confirmation = message.payload
    good, scrap = _quantity(confirmation.good_quantity), _quantity(confirmation.scrap_quantity)
    return f"good={good} scrap={scrap} {'final' if confirmation.final else 'partial'}"


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


async def tail(
    config: HubConfig,
    *,
    site: str | None,
    out: TextIO,
    limit: int | None = None,
    idle_timeout: float | None = None,
) -> int:
    """Print the hub's messages for ``site`` (every site when None) until ``limit`` messages,
    ``idle_timeout`` seconds without one, or cancellation; return how many were printed.

    Subscribes with a clean session at QoS 1, so it leaves nothing queued on the broker.
    Raises HubUnavailable / LinkMisconfigured when the hub cannot be reached or refuses it.
    """
    topic_filter = f"{config.topic_prefix}/{site or '+'}/#"
    client_id = f"plantsync-tail-{os.getpid()}-{id(out):x}"
    loop = asyncio.get_running_loop()
    printed = 0
    async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
        await hub.subscribe([(topic_filter, 1)])
        if limit is not None and limit <= 0:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_timeout) as idle:
                async for message in hub.messages():
                    print(format_message(message.topic, message.payload), file=out, flush=True)
                    printed += 1
                    if printed == limit:
                        break
                    if idle_timeout is not None:
                        idle.reschedule(loop.time() + idle_timeout)
    return printed


# ---- hub publish ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeqState:
    """The last down ``seq`` this tool published to one site, in a one-line file.

    A stand-in for the counter a real HQ system owns (in its database, next to the schedules):
    it is per machine and per user, and two tools publishing at once can take the same number.
    """

    path: Path

    @classmethod
    def for_site(cls, state_dir: Path | None, config: HubConfig, site: str) -> SeqState:
        """``<state_dir>/<broker-host>_<site>.seq``; the default dir follows XDG_STATE_HOME."""
        if state_dir is None:
            base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
            state_dir = Path(base) / "plantsync-hq"
        host = re.sub(r"[^A-Za-z0-9.-]", "_", config.host)
        return cls(state_dir / f"{host}_{site}.seq")

    def last(self) -> int:
        """0 when nothing was published yet; ValueError when the file holds no number."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise ValueError(f"the seq state file {self.path} holds {text[:20]!r}, not a number")
        return int(text)

    def store(self, seq: int) -> None:
        """Replace the file atomically, so a crash leaves the old number or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".seq.tmp")
        partial.write_text(f"{seq}\n", encoding="ascii")
        os.replace(partial, self.path)


@dataclass(frozen=True)
class DownMessageOut:
    """A down message, validated and encoded, ready to publish."""

    site: str
    message_id: str
    message_type: str
    seq: int
    payload: bytes


def read_message_file(path: Path) -> dict[str, Any]:
    """A message from a ``.toml`` file, or from JSON (any other name); OSError or ValueError."""
    if path.suffix.lower() == ".toml":
        with path.open("rb") as file:
            return tomllib.load(file)
    document = json.loads(path.read_bytes())
    if not isinstance(document, dict):
        raise ValueError("the file must hold a JSON object")
    return document


def prepare_down_message(
    document: dict[str, Any],
    *,
    site: str,
    default_seq: Callable[[], int],
    seq: int | None = None,
    source: str | None = None,
    correlation_id: str | None = None,
) -> DownMessageOut:
    """Complete ``document`` into an envelope for ``site`` and validate it as the agent would.

    The document's own keys are kept, except that ``seq``, ``source`` and ``correlation_id``
    given here win. Missing keys are filled: a new UUIDv7 ``id``, ``seq`` from ``default_seq()``,
    ``correlation_id`` = the id, ``event_time`` now. Raises MessageRejected with the agent's
    reason code (and reason) when the site would refuse the message.
    """
    message_id = document["id"] if "id" in document else new_message_id()
    filled: dict[str, Any] = {
        "id": message_id,  # first, so even an oversized message names itself (see inbound)
        "type": None,
        "schema_version": SCHEDULE_VERSION,
        "site": site,
        "source": "hq:cli",
        "stream": SCHEDULE_STREAM,
        "seq": None,
        "event_time": utc_isoformat(datetime.now(UTC)),
        "correlation_id": None,
    }
    envelope = {**filled, **document}
    if seq is not None or envelope["seq"] is None:
        envelope["seq"] = default_seq() if seq is None else seq
    if source is not None:
        envelope["source"] = source
    envelope["correlation_id"] = correlation_id or envelope["correlation_id"] or message_id
    payload = json.dumps(envelope, default=_toml_value, ensure_ascii=False).encode()
    message = parse_down_message(payload, site=site)
    return DownMessageOut(site, message.id, message.type, message.seq, payload)


def _toml_value(value: object) -> str:
    """TOML dates and times as their ISO 8601 strings; the models decide whether they fit."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def is_final(ack: ScheduleAck) -> bool:
    """Whether no further acknowledgement of the message is due (see the module docstring)."""
    return ack.outcome in FINAL_OUTCOMES or ack.reason_code is ReasonCode.DUPLICATE


async def publish(
    config: HubConfig,
    message: DownMessageOut,
    *,
    out: TextIO,
    wait: float,
    seq_state: SeqState | None = None,
) -> ScheduleAck | None:
    """Publish ``message`` on the site's down topic (QoS 1) and print its acks for up to ``wait``
    seconds; return the final ack, or None when none came in time.

    ``seq_state`` records the seq once the broker has the message (PUBACK). Raises
    HubUnavailable / LinkMisconfigured when the hub cannot be reached or refuses it.
    """
    topics = Topics(config.topic_prefix, message.site)
    client_id = f"plantsync-publish-{os.getpid()}-{message.message_id[-12:]}"
    async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
        # Subscribed first: an agent that answers at once must not be missed.
        await hub.subscribe([(topics.ack, 1)])
        await _published(hub, topics.down_schedule, message.payload, config)
        if seq_state is not None:
            seq_state.store(message.seq)
        print(
            f"published {message.message_type} #{message.seq} {message.message_id} "
            f"to {topics.down_schedule}",
            file=out,
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for inbound in hub.messages():
                    ack = _ack_of(inbound.payload, message.message_id)
                    if ack is None:
                        continue
                    line = f"{_clock()} {ack.site} ack #{ack.seq} {ack_summary(ack.payload)}"
                    print(line, file=out, flush=True)
                    if is_final(ack.payload):
                        return ack.payload
    print(
        f"no final acknowledgement within {wait:g}s; the hub has the message (PUBACK) and"
        " keeps it for the site's session: do not send it again blindly",
        file=out,
        flush=True,
    )
    return None


async def _published(hub: Hub, topic: str, payload: bytes, config: HubConfig) -> None:
    try:
        async with asyncio.timeout(config.connect_timeout.total_seconds()):
            await hub.publish(topic, payload, qos=1)
    except TimeoutError as exc:
        raise HubUnavailable(f"no PUBACK for {topic} within {config.connect_timeout}") from exc


def _ack_of(payload: bytes, message_id: str) -> ScheduleAckMessage | None:
    try:
        ack = ScheduleAckMessage.model_validate_json(payload)
    except ValidationError:
        return None  # the tool reads a live topic; anything else there is not its business
    return ack if ack.payload.original_id == message_id else None

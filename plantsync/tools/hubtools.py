"""Tools for the HQ side of the hub: ``plantsync hub tail`` and ``plantsync hub publish``.

``tail`` prints one readable line per message under ``<prefix>/<site>/#`` (or every site), as
``hublines`` formats it.

``publish`` sends one down message from a file and waits for the site's acknowledgements:

    read file ─▶ fill the envelope ─▶ validate (the agent's parser) ─▶ SUBSCRIBE up/ack
        ─▶ PUBLISH down/schedule or down/alarm (QoS 1) ─▶ PUBACK: record seq ─▶ print acks until
           a final one

An ``alarm.ack`` goes to ``down/alarm`` on its own stream (``alarm-acks``), numbered by a seq
state of its own: the schedule's sequence (and its gap detection) never sees it.

Its seq state is the last (``seq_epoch``, ``seq``) it published to the site. A seq that is not
above the last one (``--seq 2`` after 5) is a sequence reset, as the contract defines it: the
message starts the next epoch, the tool says so, and the state holds the new epoch, so the next
plain publish continues it (3 in epoch 1) and never sends a seq again in the epoch it was used
in. The state only ever moves forward in that order.

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

from pydantic import ValidationError

from plantsync.config.model import HubConfig
from plantsync.contracts import (
    SCHEDULE_STREAM,
    SCHEDULE_VERSION,
    AckOutcome,
    ReasonCode,
    ScheduleAck,
    ScheduleAckMessage,
    SiteStatus,
    Topics,
    new_message_id,
    parse_down_message,
    utc_isoformat,
)
from plantsync.contracts.alarms import ALARM_ACK_STREAM
from plantsync.drivers.hub import Hub
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable
from plantsync.tools.hublines import ack_summary, clock, format_message

FINAL_OUTCOMES = frozenset(
    {AckOutcome.APPLIED, AckOutcome.REJECTED, AckOutcome.FAILED, AckOutcome.WAITING_FOR_APPROVAL}
)
"""Outcomes that end ``hub publish``'s wait (besides the ``duplicate`` answer)."""


async def tail(
    config: HubConfig,
    *,
    site: str | None,
    out: TextIO,
    limit: int | None = None,
    idle_timeout: float | None = None,
    notice: TextIO | None = None,
) -> int:
    """Print the hub's messages for ``site`` (every site when None) until ``limit`` messages,
    ``idle_timeout`` seconds without one, or cancellation; return how many were printed.
    ``notice`` gets one line once subscribed: the broker, the MQTT version, the filter.

    Subscribes with a clean session at QoS 1, so it leaves nothing queued on the broker.
    Raises HubUnavailable / LinkMisconfigured when the hub cannot be reached or refuses it.
    """
    topic_filter = f"{config.topic_prefix}/{site or '+'}/#"
    client_id = f"plantsync-tail-{os.getpid()}-{id(out):x}"
    loop = asyncio.get_running_loop()
    printed = 0
    async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
        await hub.subscribe([(topic_filter, 1)])
        if notice is not None:
            version = hub.protocol.value if hub.protocol else "?"
            line = f"tail: {hub.url} (MQTT {version}), subscribed to {topic_filter}"
            print(line, file=notice, flush=True)
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


@dataclass(frozen=True, order=True)
class SeqMark:
    """A position in a site's down sequence, ordered by epoch, then seq."""

    epoch: int = 0
    seq: int = 0


@dataclass(frozen=True)
class SeqState:
    """The last down ``seq`` this tool published to one site, and its ``seq_epoch``, in a
    one-line file (``11``, or ``2 1`` for seq 2 of epoch 1).

    A stand-in for the counter a real HQ system owns (in its database, next to the schedules):
    it is per machine and per user, and two tools publishing at once can take the same number.
    """

    path: Path

    @classmethod
    def for_site(
        cls, state_dir: Path | None, config: HubConfig, site: str, stream: str = SCHEDULE_STREAM
    ) -> SeqState:
        """``<state_dir>/<broker-host>_<site>.seq`` (another stream than the schedule's:
        ``…_<site>.<stream>.seq``); the default dir follows XDG_STATE_HOME."""
        if state_dir is None:
            base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
            state_dir = Path(base) / "plantsync-hq"
        host = re.sub(r"[^A-Za-z0-9.-]", "_", config.host)
        suffix = "" if stream == SCHEDULE_STREAM else f".{stream}"
        return cls(state_dir / f"{host}_{site}{suffix}.seq")

    @classmethod
    def for_message(
        cls, state_dir: Path | None, config: HubConfig, site: str, document: dict[str, Any]
    ) -> SeqState:
        """The state of the stream the message ``document`` travels on (``down_stream``)."""
        return cls.for_site(state_dir, config, site, down_stream(document.get("type")))

    def last(self) -> SeqMark:
        """Seq 0 of epoch 0 when nothing was published yet; ValueError when the file holds
        something else than a seq and an optional epoch."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return SeqMark()
        except UnicodeDecodeError:
            text = "?"
        numbers = text.split()
        if not 1 <= len(numbers) <= 2 or not all(number.isdigit() for number in numbers):
            raise ValueError(f"the seq state file {self.path} holds {text[:20]!r}, not a number")
        seq, epoch = int(numbers[0]), int(numbers[1]) if len(numbers) == 2 else 0
        return SeqMark(epoch, seq)

    def store(self, mark: SeqMark) -> None:
        """Record ``mark`` unless the file already holds a later one (another publish got
        there first): the state never moves back. Replaced atomically, so a crash leaves the
        old line or the new one."""
        if mark <= self.last():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".seq.tmp")
        line = f"{mark.seq} {mark.epoch}" if mark.epoch else f"{mark.seq}"
        partial.write_text(f"{line}\n", encoding="ascii")
        os.replace(partial, self.path)


@dataclass(frozen=True)
class DownMessageOut:
    """A down message, validated and encoded, ready to publish."""

    site: str
    message_id: str
    message_type: str
    seq: int
    payload: bytes
    seq_epoch: int = 0
    reset_from: SeqMark | None = None
    """The last mark published before, when this message resets the sequence."""

    @property
    def mark(self) -> SeqMark:
        return SeqMark(self.seq_epoch, self.seq)

    def reset_notice(self) -> str | None:
        """What the reset means, in words; None when the message is no reset."""
        if self.reset_from is None:
            return None
        before = self.reset_from
        notice = (
            f"seq {self.seq} is not above the last published {before.seq} (epoch"
            f" {before.epoch}): this is a sequence reset; the message starts seq epoch"
            f" {self.seq_epoch}, and the next publish continues it with {self.seq + 1}"
        )
        if self.seq > 1:
            missing = "seq 1" if self.seq == 2 else f"seqs 1-{self.seq - 1}"
            notice += (
                f"; a new epoch counts from 1, so the site will see {missing} of it as"
                " missing and ask for a snapshot"
            )
        return notice


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
    after: SeqMark | None = None,
) -> DownMessageOut:
    """Complete ``document`` into an envelope for ``site`` and validate it as the agent would.

    The document's own keys are kept, except that ``seq``, ``source`` and ``correlation_id``
    given here win. Missing keys are filled: a new UUIDv7 ``id``, ``seq`` from ``default_seq()``,
    ``correlation_id`` = the id, ``event_time`` now, and with ``after`` (the last mark
    published to the site) ``seq_epoch``: ``after``'s, or the next one when the seq is not above
    ``after``'s (a sequence reset). Raises MessageRejected with the agent's reason code (and
    reason) when the site would refuse the message.
    """
    message_id = document["id"] if "id" in document else new_message_id()
    filled: dict[str, Any] = {
        "id": message_id,  # first, so even an oversized message names itself (see inbound)
        "type": None,
        "schema_version": SCHEDULE_VERSION,
        "site": site,
        "source": "hq:cli",
        "stream": down_stream(document.get("type")),
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
    reset_from = _number_epoch(envelope, after)
    payload = json.dumps(envelope, default=_toml_value, ensure_ascii=False).encode()
    message = parse_down_message(payload, site=site)
    return DownMessageOut(
        site, message.id, message.type, message.seq, payload, message.seq_epoch, reset_from
    )


def down_stream(message_type: object) -> str:
    """The stream a down message of ``message_type`` travels on."""
    return ALARM_ACK_STREAM if message_type == "alarm.ack" else SCHEDULE_STREAM


def down_topic(topics: Topics, message_type: str) -> str:
    """The topic a down message of ``message_type`` is published on."""
    return topics.down_alarm if message_type == "alarm.ack" else topics.down_schedule


def _number_epoch(envelope: dict[str, Any], after: SeqMark | None) -> SeqMark | None:
    """Fill ``seq_epoch`` from ``after`` (see ``prepare_down_message``); the mark it resets
    from, or None. An epoch the file sets is its author's: kept, and no reset is inferred."""
    if after is None or "seq_epoch" in envelope or not isinstance(envelope["seq"], int):
        return None
    resets = after.seq > 0 and envelope["seq"] <= after.seq
    epoch = after.epoch + 1 if resets else after.epoch
    if epoch:
        envelope["seq_epoch"] = epoch
    return after if resets else None


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

    Without a final ack it says only what it knows: the broker has the message; whether the
    site gets it depends on the site's session, which the broker tells the site alone; and
    the site's last status as the broker retains it (online, offline and why, or none).
    """
    topics = Topics(config.topic_prefix, message.site)
    client_id = f"plantsync-publish-{os.getpid()}-{message.message_id[-12:]}"
    status: list[SiteStatus] = []
    async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
        # Subscribed first: an agent that answers at once must not be missed.
        await hub.subscribe([(topics.ack, 1), (topics.status, 1)])
        notice = message.reset_notice()
        if notice is not None:
            print(notice, file=out, flush=True)
        topic = down_topic(topics, message.message_type)
        await _published(hub, topic, message.payload, config)
        if seq_state is not None:
            seq_state.store(message.mark)
        epoch = f" (epoch {message.seq_epoch})" if message.seq_epoch else ""
        print(
            f"published {message.message_type} #{message.seq}{epoch} {message.message_id} "
            f"to {topic}",
            file=out,
            flush=True,
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                async for inbound in hub.messages():
                    if inbound.topic == topics.status:
                        status[:] = _status_of(inbound.payload)
                        continue
                    ack = _ack_of(inbound.payload, message.message_id)
                    if ack is None:
                        continue
                    line = f"{clock()} {ack.site} ack #{ack.seq} {ack_summary(ack.payload)}"
                    print(line, file=out, flush=True)
                    if is_final(ack.payload):
                        return ack.payload
    print(
        f"no final acknowledgement within {wait:g}s; the hub has the message (PUBACK); the"
        " site gets it if its agent is subscribed or has a persistent session on this broker,"
        f" which the broker tells the site alone; {_site_state(message.site, status)}: do not"
        " send it again blindly",
        file=out,
        flush=True,
    )
    return None


def _status_of(payload: bytes) -> list[SiteStatus]:
    """The retained site status, or nothing (an empty payload clears it; junk is ignored)."""
    try:
        return [SiteStatus.model_validate_json(payload)]
    except ValidationError:
        return []


def _site_state(site: str, status: list[SiteStatus]) -> str:
    if not status:
        return (
            f"the hub holds no status of {site} (its agent never connected here, or the"
            " status was cleared)"
        )
    return f"{site}'s agent is {status[0].state} ({status[0].reason}, per its retained status)"


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

"""Inbound payloads for the fuzz tests, each with what the agent must make of it.

The agent subscribes to one topic, ``<prefix>/<site>/down/schedule`` (contracts/topics.py);
every down message type arrives there, resync snapshots (``schedule.snapshot``) included. So
one strategy covers every inbound message: arbitrary bytes, JSON of the wrong shape, oversized,
unknown type and version, another site, near misses, and valid messages of every type.

Expectations are written down here independently of the parser: a bad payload names the reason
codes it may be rejected with and the ``original_id`` its rejection ack must carry (the message
id when the producer wrote one, else ``sha256:`` of the bytes).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from plantsync.contracts import DOWN_MESSAGE_CLASSES
from plantsync.contracts.inbound import KEPT_PREFIX_BYTES
from plantsync.contracts.orders import ReasonCode
from tests.contracts.examples import PAYLOADS

SITE = "plant-test"
"""The site of tests/e2e/support.py, so the broker test can use its agent config."""
MAX_MESSAGE_BYTES = 4096
"""A small limit, so oversized payloads stay cheap to make, publish and store."""

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # each example bounds itself with asyncio.timeout instead: no flaky timing
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Deterministic and database-free, so CI runs the same examples every time."""

RECEIVE_DEADLINE = 5.0
"""Seconds one ``Downlink.receive`` may take, parse and commit included."""

PARSER_REASONS = frozenset(
    {
        ReasonCode.OVERSIZED,
        ReasonCode.MALFORMED_JSON,
        ReasonCode.UNKNOWN_TYPE,
        ReasonCode.UNKNOWN_VERSION,
        ReasonCode.WRONG_SITE,
        ReasonCode.SCHEMA_VIOLATION,
    }
)


@dataclass(frozen=True)
class Inbound:
    """One payload on the down topic and what must become of it.

    ``reasons`` None: a valid message (inbox, accepted). Empty: a near miss that may go either
    way. Otherwise: a dead letter and a rejection with one of these reason codes, acknowledged
    with ``original_id``.
    """

    kind: str
    payload: bytes
    reasons: frozenset[ReasonCode] | None
    original_id: str

    @property
    def is_bad(self) -> bool:
        return bool(self.reasons)


def fingerprint(payload: bytes) -> str:
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def order(order_id: str, revision: int = 1) -> dict[str, Any]:
    """A new order far outside the frozen horizon: it applies without approval."""
    start = datetime.now(UTC) + timedelta(days=2)
    return {
        "order_id": order_id,
        "revision": revision,
        "product_id": "PRD-100",
        "quantity": {"value": "100", "unit": "pcs"},
        "work_center": "line-1",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=2)).isoformat(),
        "priority": 10,
        "request_state": "Released",
    }


def envelope(message_type: str, message_id: str, payload: Any, **overrides: Any) -> dict[str, Any]:
    """A valid down envelope for SITE; ``id`` comes first, as well-behaved producers write it."""
    message: dict[str, Any] = {
        "id": message_id,
        "type": message_type,
        "schema_version": 1,
        "site": SITE,
        "source": "hq:fuzz",
        "stream": "alarm-acks" if message_type == "alarm.ack" else "schedule",
        "seq": 42,
        "event_time": datetime.now(UTC).isoformat(),
        "correlation_id": f"fuzz-{message_id[:8]}",
        "payload": payload,
    }
    message.update(overrides)
    return message


def good_release(message_id: str, order_id: str) -> Inbound:
    """The message each sequence ends with: it must still apply after any bad input."""
    message = envelope("schedule.release", message_id, {"orders": [order(order_id)]})
    return Inbound("good-release", _encode(message), None, message_id)


# ---- strategies ------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
NOT_OBJECTS = JSON_VALUES.filter(lambda value: not isinstance(value, dict))
message_ids = st.uuids().map(str)
down_types = st.sampled_from(sorted(DOWN_MESSAGE_CLASSES))


def _encode(message: object) -> bytes:
    return json.dumps(message).encode()


def _valid(message_type: str, message_id: str) -> dict[str, Any]:
    return envelope(message_type, message_id, json.loads(json.dumps(PAYLOADS[message_type])))


@st.composite
def arbitrary_bytes(draw: st.DrawFn) -> Inbound:
    payload = draw(st.binary(max_size=600))
    try:
        document = json.loads(payload)
    except ValueError:
        document = None
    if isinstance(document, dict):  # rare: bytes that happen to be a JSON object
        return Inbound("bytes", payload, frozenset(), fingerprint(payload))
    return Inbound("bytes", payload, frozenset({ReasonCode.MALFORMED_JSON}), fingerprint(payload))


@st.composite
def wrong_shapes(draw: st.DrawFn) -> Inbound:
    """JSON, but not an envelope: a scalar or array, an object without a type, a payload of
    the wrong shape."""
    choice = draw(st.integers(min_value=0, max_value=2))
    if choice == 0:
        payload = _encode(draw(NOT_OBJECTS))
        return Inbound("not-an-object", payload, frozenset({ReasonCode.MALFORMED_JSON}), "")
    if choice == 1:
        keys = st.text(max_size=8).filter(lambda key: key not in ("type", "id"))
        payload = _encode(draw(st.dictionaries(keys, JSON_VALUES, max_size=5)))
        return Inbound("no-type", payload, frozenset({ReasonCode.UNKNOWN_TYPE}), "")
    message_id = draw(message_ids)
    message = envelope(draw(down_types), message_id, draw(NOT_OBJECTS))
    return Inbound(
        "payload-shape", _encode(message), frozenset({ReasonCode.SCHEMA_VIOLATION}), message_id
    )


@st.composite
def oversized(draw: st.DrawFn) -> Inbound:
    message_id = draw(message_ids)
    padding = draw(st.integers(min_value=1, max_value=2 * MAX_MESSAGE_BYTES))
    message = _valid(draw(down_types), message_id)
    room = MAX_MESSAGE_BYTES - len(_encode(message)) + len(message["source"])
    message["source"] = "x" * (room + padding)
    return Inbound("oversized", _encode(message), frozenset({ReasonCode.OVERSIZED}), message_id)


@st.composite
def unknown_versions(draw: st.DrawFn) -> Inbound:
    message_id = draw(message_ids)
    version = draw(st.integers(min_value=-(2**70), max_value=2**70).filter(lambda v: v != 1))
    message = _valid(draw(down_types), message_id) | {"schema_version": version}
    return Inbound(
        "unknown-version", _encode(message), frozenset({ReasonCode.UNKNOWN_VERSION}), message_id
    )


@st.composite
def wrong_sites(draw: st.DrawFn) -> Inbound:
    message_id = draw(message_ids)
    site = draw(st.text(max_size=40).filter(lambda text: text != SITE))
    message = _valid(draw(down_types), message_id) | {"site": site}
    return Inbound("wrong-site", _encode(message), frozenset({ReasonCode.WRONG_SITE}), message_id)


@st.composite
def unknown_types(draw: st.DrawFn) -> Inbound:
    message_id = draw(message_ids)
    message_type = draw(st.text(max_size=30).filter(lambda t: t not in DOWN_MESSAGE_CLASSES))
    message = _valid("order.cancel", message_id) | {"type": message_type}
    return Inbound(
        "unknown-type", _encode(message), frozenset({ReasonCode.UNKNOWN_TYPE}), message_id
    )


@st.composite
def near_misses(draw: st.DrawFn) -> Inbound:
    """A valid message with up to three envelope or payload keys dropped or replaced."""
    message_id = draw(message_ids)
    message = _valid(draw(down_types), message_id)
    targets = [message, message["payload"]]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = draw(st.sampled_from(targets))
        keys = sorted(key for key in target if not (target is message and key == "id"))
        if not keys:
            continue
        key = draw(st.sampled_from(keys))
        if draw(st.booleans()):
            del target[key]
        else:
            target[key] = draw(JSON_VALUES)
    return Inbound("near-miss", _encode(message), frozenset(), message_id)


@st.composite
def valid_messages(draw: st.DrawFn) -> Inbound:
    """A valid message of any down type; its outcome (applied, stale …) is not a dead letter."""
    message_id = draw(message_ids)
    return Inbound("valid", _encode(_valid(draw(down_types), message_id)), None, message_id)


def _named(inbound: Inbound) -> Inbound:
    """Fill in the fingerprint for kinds whose id cannot be read."""
    if inbound.original_id:
        return inbound
    return Inbound(inbound.kind, inbound.payload, inbound.reasons, fingerprint(inbound.payload))


BAD_INPUT = st.one_of(
    arbitrary_bytes(),
    wrong_shapes(),
    oversized(),
    unknown_versions(),
    wrong_sites(),
    unknown_types(),
).map(_named)
ANY_INPUT = st.one_of(BAD_INPUT, near_misses(), valid_messages())


# ---- checks ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterSeen:
    payload: bytes
    reason_code: str
    reason: str


@dataclass(frozen=True)
class AckSeen:
    original_id: str
    outcome: str
    reason_code: str | None
    reason: str | None


def acks_from(messages: Iterable[dict[str, Any]]) -> list[AckSeen]:
    return [
        AckSeen(
            message["payload"]["original_id"],
            message["payload"]["outcome"],
            message["payload"].get("reason_code"),
            message["payload"].get("reason"),
        )
        for message in messages
        if message.get("type") == "schedule.ack"
    ]


def _kept(stored: bytes, inbound: Inbound) -> bool:
    """``stored`` is what a dead letter keeps of ``inbound``: all of it, or of an oversized
    one its first bytes only (the whole is named by its size and hash in the reason)."""
    if inbound.kind == "oversized" and len(stored) == KEPT_PREFIX_BYTES:
        return inbound.payload.startswith(stored)
    return stored == inbound.payload


def check_outcomes(
    sent: list[Inbound], dead_letters: list[DeadLetterSeen], acks: list[AckSeen]
) -> None:
    """Every bad payload is one dead letter with its reason and one rejection ack naming it;
    every valid one is accepted and no dead letter; nothing else is dead-lettered."""
    letters = list(dead_letters)
    for inbound in sent:
        letter = next((d for d in letters if _kept(d.payload, inbound)), None)
        if inbound.reasons is None:
            assert letter is None, f"valid {inbound.kind} was dead-lettered: {letter}"
            assert _take(acks, inbound.original_id, "accepted"), f"{inbound.kind} not accepted"
            continue
        if letter is None:
            assert not inbound.is_bad, f"{inbound.kind} {inbound.payload[:80]!r} not dead-lettered"
            continue
        letters.remove(letter)
        assert letter.reason, "a dead letter says why"
        if inbound.reasons:
            assert letter.reason_code in inbound.reasons, (inbound.kind, letter)
        ack = _take(acks, inbound.original_id, "rejected")
        assert ack is not None, f"no rejection ack for {inbound.kind} {inbound.original_id}"
        assert ack.reason_code == letter.reason_code
        assert ack.reason
    assert letters == [], "dead letters that no sent payload explains"


def _take(acks: list[AckSeen], original_id: str, outcome: str) -> AckSeen | None:
    ack = next((a for a in acks if a.original_id == original_id and a.outcome == outcome), None)
    if ack is not None:
        acks.remove(ack)
    return ack

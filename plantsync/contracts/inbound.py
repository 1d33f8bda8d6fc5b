"""Turn the bytes HQ sent down into a validated message, or a rejection that says why.

The checks run cheapest first, and each one has its reason code:

    oversized          longer than ``max_bytes``: not parsed at all; the rejection names its
                       size and its id (read from the first bytes); ``rejection_reason`` adds its
                       sha256
    malformed-json     not UTF-8, not JSON (NaN, Infinity, a duplicate key, nesting deeper
                       than ``MAX_JSON_DEPTH``: ``strict_json``), or not a JSON object
    unknown-type       ``type`` missing or not a down message type
    unknown-version    a ``schema_version`` this agent does not support
    wrong-site         ``site`` names another site
    schema-violation   anything else the message's model refuses, summarized in one line

Whatever the bytes, the only exception that leaves :func:`parse_down_message` is
:class:`~plantsync.errors.MessageRejected`, carrying the original's ``id`` and
``correlation_id`` whenever they could be read, so the rejection ack can name the message, and
its ``seq`` and ``seq_epoch`` when it is on this site's down stream (``site`` this site,
``stream`` "schedule", both valid; of an oversized message, read from its first bytes), so
that a refused message counts as received for gap detection.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from plantsync.contracts.orders import ReasonCode
from plantsync.contracts.schedule import (
    DOWN_MESSAGE_CLASSES,
    MAX_SEQ_EPOCH,
    SCHEDULE_STREAM,
    SUPPORTED_DOWN_VERSIONS,
    DownMessage,
)
from plantsync.errors import MessageRejected

MAX_DOWN_MESSAGE_BYTES = 256 * 1024
MAX_JSON_DEPTH = 16
"""The deepest nesting any message of the contract has is 6 (schedule → payload → orders →
order → quantity); deeper input is refused before the models see it."""
KEPT_PREFIX_BYTES = 64 * 1024
"""What a dead letter keeps of a message by default (``store.dead_letter_max_size``): its
first bytes, for a person to recognise it; the whole message's size and sha256 are kept
beside them, so the store never grows by what it refused."""

_ID_MAX_CHARS = 128
_SHOWN_ERRORS = 3
# An oversized message is not parsed, but an envelope written by a well-behaved producer starts
# with its id; reading it from the first bytes lets the rejection still name the message.
_LEADING_ID = re.compile(rb'\A\s*\{\s*"id"\s*:\s*"([A-Za-z0-9_.:-]{1,128})"')

_DOWN_MESSAGE: TypeAdapter[DownMessage] = TypeAdapter(DownMessage)


def parse_down_message(
    payload: bytes, *, site: str, max_bytes: int = MAX_DOWN_MESSAGE_BYTES
) -> DownMessage:
    """Validate one down message addressed to ``site``; raise MessageRejected if it is not one."""
    if len(payload) > max_bytes:
        seq, seq_epoch = _leading_seq(payload, site)
        raise MessageRejected(
            ReasonCode.OVERSIZED,
            f"the message has {len(payload)} bytes, the limit is {max_bytes}",
            _leading_id(payload),
            seq=seq,
            seq_epoch=seq_epoch,
        )
    document = _json_object(payload)
    context = _Context(
        message_id=_short_string(document.get("id")),
        correlation_id=_short_string(document.get("correlation_id")),
    )
    context.seq, context.seq_epoch = sequence_of(document, site)
    message_type = _known_type(document, context)
    _check_version(document, message_type, context)
    _check_site(document, site, context)
    try:
        return _DOWN_MESSAGE.validate_json(payload)
    except ValidationError as exc:
        raise context.reject(ReasonCode.SCHEMA_VIOLATION, _summary(exc, message_type)) from exc


def rejection_reason(payload: bytes, rejected: MessageRejected) -> str:
    """The reason a dead letter and its rejection ack give: the rejection's, and for an
    oversized message the hash of the whole (only its first bytes are kept)."""
    if rejected.reason_code == ReasonCode.OVERSIZED:
        return f"{rejected.detail} ({payload_fingerprint(payload)})"
    return rejected.detail


def payload_fingerprint(payload: bytes) -> str:
    """Names a message whose id could not be read: ``sha256:<hex>`` of its bytes."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


class _Context:
    """What is known about the message so far, for the rejection to carry."""

    def __init__(self, message_id: str | None, correlation_id: str | None) -> None:
        self.message_id = message_id
        self.correlation_id = correlation_id
        self.message_type: str | None = None
        self.seq: int | None = None
        self.seq_epoch = 0

    def reject(self, reason_code: ReasonCode, detail: str) -> MessageRejected:
        return MessageRejected(
            reason_code,
            detail,
            self.message_id,
            self.correlation_id,
            message_type=self.message_type,
            seq=self.seq,
            seq_epoch=self.seq_epoch,
        )


def sequence_of(document: dict[str, Any], site: str) -> tuple[int | None, int]:
    """The down ``seq`` and ``seq_epoch`` of a message that may be invalid otherwise; seq None
    unless the message is addressed to ``site`` on the schedule stream with a valid seq and
    epoch: a message for another site counts on that site's stream, not on this one."""
    if document.get("site") != site or document.get("stream") != SCHEDULE_STREAM:
        return None, 0
    seq, epoch = document.get("seq"), document.get("seq_epoch", 0)
    if not _whole(seq, 1, None) or not _whole(epoch, 0, MAX_SEQ_EPOCH):
        return None, 0
    return seq, epoch


def _whole(value: object, low: int, high: int | None) -> bool:
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return low <= value and (high is None or value <= high)


def strict_json(payload: bytes) -> Any:
    """The one JSON reader for what enters the agent (the down topics and the local API):
    strict UTF-8, no NaN or Infinity, no duplicate keys (a reader that lets the last one win
    sees another message than a reader that takes the first), nesting at most
    ``MAX_JSON_DEPTH`` deep. ``MessageRejected`` (malformed-json) says which rule broke."""
    try:
        # jiter: strict UTF-8, a nesting limit instead of RecursionError, no NaN or Infinity.
        document = pydantic_core.from_json(payload, allow_inf_nan=False)
    except ValueError as exc:
        raise MessageRejected(
            ReasonCode.MALFORMED_JSON, f"not JSON: {_clip(str(exc), 120)}"
        ) from exc
    _check_depth(document)
    # jiter keeps the last of duplicate keys silently; the standard reader's hook sees them all.
    # Only valid, shallow JSON of bounded size gets here, so the second pass is cheap and safe.
    json.loads(payload, object_pairs_hook=_unique_keys)
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                detail = f"duplicate key {_clip(key, 40)!r} in a JSON object"
                raise MessageRejected(ReasonCode.MALFORMED_JSON, detail)
            seen.add(key)
    return document


def _check_depth(document: Any) -> None:
    level = [document] if isinstance(document, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            detail = f"JSON nested deeper than {MAX_JSON_DEPTH} levels (the contract needs fewer)"
            raise MessageRejected(ReasonCode.MALFORMED_JSON, detail)
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]


def _json_object(payload: bytes) -> dict[str, Any]:
    document = strict_json(payload)
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise MessageRejected(ReasonCode.MALFORMED_JSON, f"a JSON object is expected, not {kind}")
    return document


def _known_type(document: dict[str, Any], context: _Context) -> str:
    message_type = document.get("type")
    if not isinstance(message_type, str):
        raise context.reject(ReasonCode.UNKNOWN_TYPE, "the message has no string 'type'")
    if message_type not in DOWN_MESSAGE_CLASSES:
        context.message_type = _short_string(message_type, 64)
        known = ", ".join(DOWN_MESSAGE_CLASSES)
        detail = f"type {_clip(message_type, 64)!r} is not a down message type ({known})"
        raise context.reject(ReasonCode.UNKNOWN_TYPE, detail)
    context.message_type = message_type
    return message_type


def _check_version(document: dict[str, Any], message_type: str, context: _Context) -> None:
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise context.reject(ReasonCode.SCHEMA_VIOLATION, "schema_version: an integer is required")
    supported = sorted(SUPPORTED_DOWN_VERSIONS[message_type])
    if version not in supported:
        detail = f"{message_type} schema_version {_clip(str(version), 20)} is not supported"
        raise context.reject(ReasonCode.UNKNOWN_VERSION, f"{detail} (supported: {supported})")


def _check_site(document: dict[str, Any], site: str, context: _Context) -> None:
    addressed = document.get("site")
    if isinstance(addressed, str) and addressed != site:
        detail = f"the message is for site {_clip(addressed, 64)!r}, this is {site!r}"
        raise context.reject(ReasonCode.WRONG_SITE, detail)


def _summary(error: ValidationError, message_type: str) -> str:
    """One line: up to three 'key.path: reason' items, the input itself never repeated."""
    items = error.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for item in items[:_SHOWN_ERRORS]:
        location = item["loc"]
        if location and location[0] == message_type:  # the union's tag, not part of the path
            location = location[1:]
        path = ".".join(_clip(str(level), 40) for level in location) or "message"
        parts.append(f"{path}: {_clip(item['msg'], 160)}")
    if len(items) > _SHOWN_ERRORS:
        parts.append(f"(and {len(items) - _SHOWN_ERRORS} more)")
    return "; ".join(parts)


def _short_string(value: object, limit: int = _ID_MAX_CHARS) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit and value.isprintable():
        return value
    return None


def _leading_seq(payload: bytes, site: str) -> tuple[int | None, int]:
    """``sequence_of`` an oversized message, from the envelope in its first bytes. Only keys
    followed by another one are complete (the prefix may cut the last one short)."""
    try:
        leading = pydantic_core.from_json(payload[:KEPT_PREFIX_BYTES], allow_partial=True)
    except ValueError:
        return None, 0
    if not isinstance(leading, dict) or len(leading) < 2:
        return None, 0
    complete = dict(list(leading.items())[:-1])
    return sequence_of(complete, site)


def _leading_id(payload: bytes) -> str | None:
    match = _LEADING_ID.match(payload[:512])
    return match.group(1).decode("ascii") if match else None


def _clip(text: str, limit: int) -> str:
    printable = "".join(char if char.isprintable() else "?" for char in text[: limit + 1])
    return printable if len(printable) <= limit else printable[: limit - 1] + "…"

"""From an MES answer to canonical messages: JSON pointers into each record, no code in config.

    answer ──records pointer──▶ [record, …] ──per record──▶ fields (pointer each), values
    (translations), constants ──▶ {payload field: value} ──▶ the message type's payload model

A record that does not map (a pointer that finds nothing for a required field, a value with no
translation, a value the contract refuses) is one ``Rejected`` with a one-line reason naming the
field; the other records of the page still map. An answer whose records pointer does not find
an array is a ``BadAnswer``: nothing of it maps.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from plantsync.config.plant import PollEndpointConfig
from plantsync.contracts.envelope import Contract
from plantsync.contracts.mes import MES_MESSAGES
from plantsync.contracts.orders import ReasonCode
from plantsync.errors import MessageRejected

EXCERPT_BYTES = 1024
"""What a dead letter keeps of a bad answer or record: enough to see what was wrong."""

_MISSING = object()


class BadAnswer(MessageRejected):
    """An answer that cannot be read at all (malformed, oversized, not the shape the config
    says): dead-lettered with ``excerpt``, the cursor stays where it was."""

    def __init__(self, reason_code: ReasonCode, detail: str, excerpt: bytes) -> None:
        super().__init__(reason_code, detail)
        self.excerpt = excerpt[:EXCERPT_BYTES]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that did not map: a bounded excerpt of it and why."""

    excerpt: bytes
    reason: str


def resolve(document: Any, pointer: str) -> Any:
    """The value at ``pointer`` (RFC 6901) in ``document``, or ``_MISSING``."""
    if pointer == "":
        return document
    value = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict) and token in value:
            value = value[token]
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return _MISSING
    return value


def found(value: Any) -> bool:
    """False for what ``resolve`` returns when the pointer finds nothing."""
    return value is not _MISSING


class RecordMapping:
    """The mapping of one endpoint (``[[mes_poll]]``: records, fields, values, constants)."""

    def __init__(self, config: PollEndpointConfig) -> None:
        self.config = config
        self.kind = MES_MESSAGES[config.message]

    def records(self, answer: Any, body: bytes) -> list[Any]:
        """The records of an answer; ``BadAnswer`` when the records pointer finds no array."""
        records = resolve(answer, self.config.records)
        if not isinstance(records, list):
            where = self.config.records or "the answer itself"
            what = "nothing" if not found(records) else type(records).__name__
            raise BadAnswer(
                ReasonCode.SCHEMA_VIOLATION,
                f"records pointer {where!r} found {what}, not an array",
                body,
            )
        return records

    def payload(self, record: Any) -> Contract | Rejected:
        """The record as the message type's payload, or why it is not one."""
        try:
            data = self._fields(record)
            return self.kind.payload.model_validate(data)
        except ValueError as exc:  # pydantic's ValidationError is one
            return Rejected(_excerpt(record), self._reason(exc))

    def _fields(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ValueError(f"a record is a JSON object, not {type(record).__name__}")
        data: dict[str, Any] = {}
        for name, pointer in self.config.fields.items():
            value = resolve(record, pointer)
            if found(value) and value is not None:
                _put(data, name, self._translated(name, value))
        for name, constant in self.config.constants.items():
            _put(data, name, constant)
        return data

    def _translated(self, name: str, value: Any) -> Any:
        table: Mapping[str, Any] | None = self.config.values.get(name)
        if table is None:
            return value
        key = value if isinstance(value, str) else json.dumps(value)
        if key not in table:
            raise ValueError(f"{name}: the MES's value {key[:60]!r} is not in values.{name}")
        return table[key]

    def _reason(self, error: ValueError) -> str:
        if isinstance(error, ValidationError):
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or self.config.message
            pointer = self.config.fields.get(where.split(".")[0])
            source = f" (from {pointer!r})" if pointer is not None else ""
            more = f"; and {error.error_count() - 1} more" if error.error_count() > 1 else ""
            return f"{self.config.message}.{where}{source}: {first['msg']}{more}"[:500]
        return str(error)[:500]


def _put(data: dict[str, Any], name: str, value: Any) -> None:
    """``a.b`` = value → data["a"]["b"] = value."""
    *parents, leaf = name.split(".")
    for parent in parents:
        data = data.setdefault(parent, {})
    data[leaf] = value


def _excerpt(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode()[:EXCERPT_BYTES]

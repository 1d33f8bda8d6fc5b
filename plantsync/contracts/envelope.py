"""The envelope every plantsync message travels in, whatever its direction.

{
  "id": "0193a1c2-...",            unique, time-ordered (UUIDv7): de-duplicate by it
  "type": "machine.state",          what the payload is
  "schema_version": 1,              of that type's payload; bumped on breaking changes
  "site": "plant-01",               the plant that sent it (or is addressed)
  "source": "opcua:line-1",         which link inside the agent produced it
  "stream": "machine/press-1",      ordering key
  "seq": 42,                        per-stream sequence number: 1, 2, 3 ... gaps are losses
  "event_time": "2026-...Z",        when it happened at the source
  "historical": false,              true when sent from the backlog after an outage (backfill):
                                    per stream, live and historical messages interleave on
                                    the wire; order by (site, stream, seq)
  "correlation_id": null,           follows a schedule through its acks and confirmations
  "payload": { ... }
}
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

PayloadT = TypeVar("PayloadT", bound=BaseModel)

SITE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Site and machine ids become topic levels: no '/', '+', '#' or spaces."""


class Contract(BaseModel):
    """Base of every wire model: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Envelope(Contract, Generic[PayloadT]):
    """Common header of every message; ``payload`` is typed per message type."""

    id: str = Field(description="UUIDv7, unique and time-ordered; consumers de-duplicate by it")
    type: str
    schema_version: int = Field(ge=1)
    site: str = Field(pattern=SITE_PATTERN)
    source: str
    stream: str = Field(description="ordering key; seq counts per stream")
    seq: int = Field(ge=1, description="per-stream sequence number, gapless unless evicted")
    event_time: AwareDatetime
    historical: bool = Field(
        default=False,
        description="sent from the backlog after an outage (backfill), not live: it keeps its"
        " original seq and event_time, and may arrive after newer messages of its stream;"
        " order a stream by seq",
    )
    correlation_id: str | None = None
    payload: PayloadT


def utc_isoformat(moment: datetime) -> str:
    """RFC 3339 with millisecond precision and a Z, the form every timestamp takes on the wire."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_LIVE = b'"historical":false'
_HISTORICAL = b'"historical":true'


def as_historical(payload: bytes) -> bytes:
    """The serialized envelope ``payload`` with ``historical`` set, nothing else changed.

    Works on the bytes (a backlog of a million rows is not parsed again): the agent writes
    envelopes with ``model_dump_json``, compact, the envelope's own fields before ``payload``,
    so the first ``"historical":false`` is the envelope's (a string containing those
    characters is escaped, ``\\"historical\\"``, and cannot match). A payload without it is
    returned unchanged.
    """
    return payload.replace(_LIVE, _HISTORICAL, 1)

"""Machine state: what OPC UA (and later MES) report about a machine, sent up by exception.

One message carries the changes of one machine seen in one notification batch, so a press that
changes speed and temperature together costs one message, not two. A periodic ``snapshot``
message carries every tag's last value so a consumer that joins late (or missed an evicted
change) can rebuild the full state. A snapshot also carries each tag's ``metadata`` (data
type, engineering units, EURange), read once per connection, never on a change.

Values are JSON, mapped from OPC UA deterministically (``drivers/opcua_values.py``):

    Boolean, integers, Float/Double, String   as they are (NaN and infinities become null)
    enumerations                              their number
    LocalizedText                             its text (the locale is left out)
    DateTime                                  ISO 8601 in UTC ("2026-01-01T12:00:00+00:00")
    ByteString                                base64 (RFC 4648, padded)
    NodeId, ExpandedNodeId                    their string form ("ns=2;s=press-1.speed")
    QualifiedName                             "<namespace index>:<name>"
    Guid                                      its canonical string; StatusCode its number
    arrays (and matrices)                     JSON arrays (nested), element by element
    structures (ExtensionObjects the server   objects: field name -> value, in the order of
    defines; decoded with its data type       the structure's definition
    definitions)
    an ExtensionObject that cannot be decoded {"type_id": "<node id>", "body": "<base64>"}

Gaps: values of a tag that were not received live and that no history could fill.

After a link to an OPC UA server was down, the agent was stopped, or the server's queue for a
tag overflowed (the gaps are kept in the agent's store, so one survives a restart and a backfill
cut short goes on after the next connect from the last value it sent), the agent reads
what each tag missed from the server's history (``backfill = "history"``) and sends it as
historical ``machine.state`` (``historical: true``, the original source timestamps). What it
cannot read, it reports as one ``history.gap`` per tag, in the business lane (never evicted),
so HQ knows the hole is real and not a delay: ``stream`` names the machine stream with the
hole, ``tag`` the tag, ``start``/``end`` the interval (exclusive: the values at both ends were
delivered), ``reason`` why (``no-history``: the server keeps none for the node;
``not-configured``: the tag left the config before its gap was read; otherwise the OPC UA
status the server answered the history read with, e.g. ``BadHistoryOperationUnsupported``). A
report is sent at least once: an agent that crashes between a report and the end of its
backfill sends it again after the restart.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field
from typing_extensions import TypeAliasType

from plantsync.contracts.envelope import SITE_PATTERN, Contract, Envelope

MACHINE_STATE_TYPE: Literal["machine.state"] = "machine.state"
MACHINE_STATE_VERSION = 1


class Quality(StrEnum):
    """OPC UA StatusCode severity, the part every consumer needs."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class ItemState(StrEnum):
    """OPC UA Machinery (OPC 40001-1) MachineryItemState."""

    NOT_AVAILABLE = "NotAvailable"
    OUT_OF_SERVICE = "OutOfService"
    NOT_EXECUTING = "NotExecuting"
    EXECUTING = "Executing"


TagScalar = bool | int | float | str | None

TagJson = TypeAliasType(
    "TagJson", "bool | int | float | str | list[TagJson] | dict[str, TagJson] | None"
)
"""A tag's value: a scalar, or the JSON of an array or a structure (see the table above)."""


class TagValue(Contract):
    """One tag's value as the source reported it."""

    tag: str = Field(description="the tag name from the config, e.g. 'speed'")
    value: TagJson
    quality: Quality = Quality.GOOD
    status_code: int = Field(default=0, ge=0, description="the raw OPC UA StatusCode")
    source_time: AwareDatetime | None = None


class Range(Contract):
    """OPC UA EURange: the range a value normally stays within."""

    low: float
    high: float


class TagMetadata(Contract):
    """What a tag's numbers mean, as the server describes the node (read once per connect)."""

    data_type: str | None = Field(default=None, description="e.g. 'Double', or a structure's")
    units: str | None = Field(default=None, description="EngineeringUnits display name, e.g. '°C'")
    unit_id: int | None = Field(default=None, description="EngineeringUnits UnitId (UN/CEFACT)")
    eu_range: Range | None = None
    history: bool | None = Field(
        default=None, description="the server keeps its history (AccessLevel HistoryRead)"
    )


class MachineState(Contract):
    """Payload of ``machine.state``: changed (or, in a snapshot, all) tags of one machine."""

    machine_id: str = Field(pattern=SITE_PATTERN)
    kind: Literal["change", "snapshot"] = "change"
    values: list[TagValue] = Field(min_length=1)
    metadata: dict[str, TagMetadata] | None = Field(
        default=None,
        description="snapshots only: tag name -> data type, engineering units, EURange, for"
        " the tags whose server describes them",
    )


class MachineStateMessage(Envelope[MachineState]):
    """A ``machine.state`` message, stream ``machine/<machine_id>``."""

    type: Literal["machine.state"] = MACHINE_STATE_TYPE


def machine_stream(machine_id: str) -> str:
    """The ordering key of a machine's state messages."""
    return f"machine/{machine_id}"


HISTORY_GAP_TYPE: Literal["history.gap"] = "history.gap"
HISTORY_GAP_VERSION: Literal[1] = 1


class HistoryGap(Contract):
    """Payload of ``history.gap``: one tag's values between ``start`` and ``end`` are lost."""

    stream: str = Field(description="the machine stream with the hole, e.g. 'machine/press-1'")
    machine_id: str
    tag: str
    start: AwareDatetime = Field(description="source time of the last value delivered before")
    end: AwareDatetime = Field(description="source time of the first value delivered after")
    reason: str = Field(max_length=200)


class HistoryGapMessage(Envelope[HistoryGap]):
    """A ``history.gap`` message, stream ``gap/<link>``."""

    type: Literal["history.gap"] = HISTORY_GAP_TYPE
    schema_version: Literal[1] = HISTORY_GAP_VERSION


def gap_stream(link: str) -> str:
    """The ordering key of one link's gap reports (``gap/opcua:line-1``)."""
    return f"gap/{link}"

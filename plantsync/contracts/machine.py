"""Machine state: what OPC UA (and later MES) report about a machine, sent up by exception.

One message carries the changes of one machine seen in one notification batch, so a press that
changes speed and temperature together costs one message, not two. A periodic ``snapshot``
message carries every tag's last value so a consumer that joins late (or missed an evicted
change) can rebuild the full state.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, Field

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


class TagValue(Contract):
    """One tag's value as the source reported it."""

    tag: str = Field(description="the tag name from the config, e.g. 'speed'")
    value: TagScalar
    quality: Quality = Quality.GOOD
    status_code: int = Field(default=0, ge=0, description="the raw OPC UA StatusCode")
    source_time: AwareDatetime | None = None


class MachineState(Contract):
    """Payload of ``machine.state``: changed (or, in a snapshot, all) tags of one machine."""

    machine_id: str = Field(pattern=SITE_PATTERN)
    kind: Literal["change", "snapshot"] = "change"
    values: list[TagValue] = Field(min_length=1)


class MachineStateMessage(Envelope[MachineState]):
    """A ``machine.state`` message, stream ``machine/<machine_id>``."""

    type: Literal["machine.state"] = MACHINE_STATE_TYPE


def machine_stream(machine_id: str) -> str:
    """The ordering key of a machine's state messages."""
    return f"machine/{machine_id}"

"""The canonical messages, shared by every part of plantsync. JSON on the wire."""

from plantsync.contracts.envelope import Contract, Envelope, utc_isoformat
from plantsync.contracts.ids import message_id_time_ms, new_message_id
from plantsync.contracts.machine import (
    MACHINE_STATE_TYPE,
    MACHINE_STATE_VERSION,
    ItemState,
    MachineState,
    MachineStateMessage,
    Quality,
    TagValue,
    machine_stream,
)
from plantsync.contracts.status import SiteStatus
from plantsync.contracts.topics import Topics

__all__ = [
    "MACHINE_STATE_TYPE",
    "MACHINE_STATE_VERSION",
    "Contract",
    "Envelope",
    "ItemState",
    "MachineState",
    "MachineStateMessage",
    "Quality",
    "SiteStatus",
    "TagValue",
    "Topics",
    "machine_stream",
    "message_id_time_ms",
    "new_message_id",
    "utc_isoformat",
]

"""Gaps: values of a tag that were not received live and that no history could fill.

After a link to an OPC UA server was down (or the server's queue overflowed), the agent reads
what each tag missed from the server's history (``backfill = "history"``) and sends it as
historical ``machine.state`` (``historical: true``, the original source timestamps). What it
cannot read, it reports as one ``history.gap`` per tag, in the business lane (never evicted),
so HQ knows the hole is real and not a delay: ``stream`` names the machine stream with the
hole, ``tag`` the tag, ``start``/``end`` the interval (exclusive: the values at both ends were
delivered), ``reason`` why (``no-history``: the server keeps none for the node; otherwise the
OPC UA status the server answered the history read with, e.g. ``BadHistoryOperationUnsupported``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from plantsync.contracts.envelope import Contract, Envelope

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

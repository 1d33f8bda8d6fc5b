"""MES polling: declarative REST endpoints read page by page and mapped to MES messages.

    source.py    MesPollSource: one endpoint, ``fetch(state) -> Page`` (one request each)
    mapping.py   RecordMapping: JSON pointers from a record to a payload; BadAnswer, Rejected

The cursor, the schedule, the rate limit, retries and supervision are the agent's
(``agent/polling``); this package does no SQL and has no loop.
"""

from plantsync.drivers.mespoll.mapping import BadAnswer, RecordMapping, Rejected
from plantsync.drivers.mespoll.source import MesPollSource, Page

__all__ = ["BadAnswer", "MesPollSource", "Page", "RecordMapping", "Rejected"]

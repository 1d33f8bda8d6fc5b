"""MES polling: declarative REST endpoints read page by page and mapped to MES messages.

    source.py    MesPollSource: one endpoint, ``fetch(state) -> Page`` (one request each)
    mapping.py   RecordMapping: JSON pointers from a record to a payload; BadAnswer, Rejected

The cursor, the schedule, the rate limit, retries and supervision are the agent's
(``agent/polling``); this package does no SQL and has no loop.

The package exports the mapping only: ``source`` (``MesPollSource``, ``Page``) imports httpx,
which the agent's start-up must not pay for before READY=1 (``drivers/__init__.py``); import
them from ``plantsync.drivers.mespoll.source``.
"""

from plantsync.drivers.mespoll.mapping import BadAnswer, RecordMapping, Rejected

__all__ = ["BadAnswer", "RecordMapping", "Rejected"]

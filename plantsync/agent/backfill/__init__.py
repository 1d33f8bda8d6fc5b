"""Replay after an outage: the backfill lane's rate (``bucket``) and its progress (``progress``).

The uplink owns the lanes (``agent/uplink.py``); this package holds what it needs to pace the
backlog and to tell people how far it is.
"""

from plantsync.agent.backfill.bucket import TokenBucket
from plantsync.agent.backfill.progress import BackfillProgress, BackfillStatus

__all__ = ["BackfillProgress", "BackfillStatus", "TokenBucket"]

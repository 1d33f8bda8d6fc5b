"""What the store keeps for the sources' gaps: each tag's last value received live and the
intervals to backfill from the server's history (``ledger.py``)."""

from plantsync.buffer.gaps.ledger import GapChanges, NewGap, SourceGaps, StoredGap, TagKey

__all__ = ["GapChanges", "NewGap", "SourceGaps", "StoredGap", "TagKey"]

"""What the store keeps for the polled sources: each endpoint's cursor (``cursors.py``)."""

from plantsync.buffer.polling.cursors import CursorState, PollCursors

__all__ = ["CursorState", "PollCursors"]

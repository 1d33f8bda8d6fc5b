"""Read-only questions about what the store holds of one order's life (``timeline.py``)."""

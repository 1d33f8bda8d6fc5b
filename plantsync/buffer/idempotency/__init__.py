"""Idempotency keys of what enters from the plant (``keys.py``): a sub-package because the
buffer's package already holds as many modules as the layout allows."""

from plantsync.buffer.idempotency.keys import IdempotencyKeys, KeptAnswer, KeyedRequest, Reply

__all__ = ["IdempotencyKeys", "KeptAnswer", "KeyedRequest", "Reply"]

"""Unique, time-ordered message ids (UUID version 7, RFC 9562).

Ids sort by creation time, so HQ consumers can de-duplicate by id and order by it without a
second field. Within one millisecond a 12-bit counter keeps ids from one process strictly
increasing (RFC 9562 §6.2, method 1); the remaining 62 bits are random.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_message_id() -> str:
    """Return a new UUIDv7 as its canonical 36-character string."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        else:
            # Same millisecond, or the clock stepped back: keep ids increasing.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        unix_ms, counter = _last_ms, _counter
    random_tail = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | counter << 64
    value |= 0b10 << 62 | random_tail
    return str(uuid.UUID(int=value))


def message_id_time_ms(message_id: str) -> int:
    """The Unix time in milliseconds encoded in a UUIDv7 message id."""
    return uuid.UUID(message_id).int >> 80

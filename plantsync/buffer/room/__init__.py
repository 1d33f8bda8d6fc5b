"""Room at the store's size cap: the eviction of the oldest ready telemetry that makes room for
what is added (``sqlite.SqliteOutbox.add_in``, here); what dead letters and idempotency keys
hold against the cap and the eviction of the oldest dead letters (``held.py``).

Business rows are never evicted here; telemetry that was handed out (claimed) stays until its
acknowledgement. Both are the outbox's SQL, kept beside it so ``sqlite.py`` stays readable.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from plantsync.buffer.base import Lane, RowStatus

__all__ = ["evict_telemetry", "id_list"]

_OLDEST_READY = (
    "SELECT id, size FROM outbox WHERE lane = ? AND status = ? AND id > ? AND id <= ?"
    " ORDER BY id LIMIT ?"
)
_DELETE_READY_BETWEEN = "DELETE FROM outbox WHERE lane = ? AND status = ? AND id > ? AND id <= ?"
_DELETE_IDS_ONLY = "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))"
_SIZES_OF_IDS = (
    "SELECT id, size FROM outbox WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
_EVICTION_PAGE = 256


async def evict_telemetry(
    connection: aiosqlite.Connection,
    excess: int,
    ready: Sequence[tuple[int, int]],
    returned: Sequence[int],
) -> tuple[int, int]:
    """Delete the oldest ready telemetry until ``excess`` bytes are freed; return (bytes, rows).

    Ready means returned by a nack (``returned``, all claimed once) or inside one of the
    ``ready`` id ranges ``(after, up to]``, oldest range first (the backlog not handed out
    yet, then the rows after the live cursor); rows outside are claimed and stay. Pages
    through the (lane, status, id) index so a large backlog is not scanned whole.
    """
    freed = count = 0
    if returned and excess > 0:
        victims = []
        for row_id, size in await connection.execute_fetchall(_SIZES_OF_IDS, (id_list(returned),)):
            if freed >= excess:
                break
            freed, count = freed + size, count + 1
            victims.append(row_id)
        await connection.execute(_DELETE_IDS_ONLY, (id_list(victims),))
    for after, up_to in ready:
        last_id = after
        while freed < excess:
            params = (Lane.TELEMETRY, RowStatus.READY, last_id, up_to, _EVICTION_PAGE)
            page = list(await connection.execute_fetchall(_OLDEST_READY, params))
            for row_id, size in page:
                if freed >= excess:
                    break
                freed, count, last_id = freed + size, count + 1, row_id
            if len(page) < _EVICTION_PAGE:
                break
        if last_id > after:
            bounds = (Lane.TELEMETRY, RowStatus.READY, after, last_id)
            await connection.execute(_DELETE_READY_BETWEEN, bounds)
    return freed, count


def id_list(row_ids: Sequence[int]) -> str:
    """Row ids as one JSON parameter (``json_each``): no SQL is built from values."""
    return json.dumps([int(row_id) for row_id in row_ids])

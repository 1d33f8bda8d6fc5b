"""Retention: what the store forgets, and when the file gives the space back.

    prune(database, policy, now)            one nightly run (``agent/housekeeping.py``)
      inbox         settled rows (APPLIED, REJECTED, FAILED) last updated before the window
      seen_ids      ids first seen before theirs, never one whose inbox row is still there
      dead_letters  older than theirs, then the oldest beyond the row cap
      idempotency_keys  older than theirs (a retry after that is a new request)
      orders        closed (cancelled by HQ; ended, aborted or finally confirmed at the plant:
                    ``close_order``) longer than theirs, none a pending inbox row names
      poll_cursors  of endpoints no longer configured, last read longer ago than theirs
      tag_marks, source_gaps  not moved / opened for ``keep_source_gaps`` (30 d): a tag no
                    longer configured, or a gap older than any plant server's history
      ─▶ meta.pruned_at = now
      ─▶ PRAGMA incremental_vacuum, in steps ─▶ wal_checkpoint(TRUNCATE): the file shrinks

Nothing pending is ever deleted: RECEIVED, RETRY and WAITING_APPROVAL rows stay whatever their
age, and the outbox (and the sent archive, which bounds itself at every ack) is not touched.

Every delete is a batch of at most ``batch_rows`` rows in its own short transaction, and every
vacuum step gives back at most 2048 pages (8 MiB of 4 KiB pages), so the agent's writers, which
share the store's one connection and lock, wait for one batch at most, never for the whole run.

The file shrinks only because the store uses ``auto_vacuum = INCREMENTAL`` (``database.py``:
set before the first table of a new file, by one VACUUM on an older one). Freed pages are first
appended to the WAL, which the final checkpoint writes back and truncates; ``bytes_before`` and
``bytes_after`` count the file and its WAL together.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plantsync.buffer.database import Database
from plantsync.buffer.inbox import DEDUPE_HORIZON_SECONDS, SETTLED, SETTLED_RETENTION_SECONDS

_PRUNE_INBOX = (
    "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox"
    " WHERE status IN (?, ?, ?) AND updated_at < ? LIMIT ?)"
)
_PRUNE_SEEN = (
    "DELETE FROM seen_ids WHERE message_id IN (SELECT message_id FROM seen_ids"
    " WHERE seen_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM inbox WHERE inbox.message_id = seen_ids.message_id)"
    " LIMIT ?)"
)
_PRUNE_DEAD = (
    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters WHERE dead_at < ? LIMIT ?)"
)
_COUNT_DEAD = "SELECT COUNT(*) FROM dead_letters"
_PRUNE_OLDEST_DEAD = (
    "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters ORDER BY id LIMIT ?)"
)
_PRUNE_KEYS = (
    "DELETE FROM idempotency_keys WHERE id IN (SELECT id FROM idempotency_keys"
    " WHERE created_at < ? LIMIT ?)"
)
_PRUNE_ORDERS = (
    "DELETE FROM orders WHERE order_id IN (SELECT order_id FROM orders WHERE closed_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM inbox, json_each(inbox.order_ids)"
    " WHERE inbox.status NOT IN (?, ?, ?) AND json_each.value = orders.order_id) LIMIT ?)"
)
_PRUNE_CURSORS = (
    "DELETE FROM poll_cursors WHERE endpoint IN (SELECT endpoint FROM poll_cursors"
    " WHERE updated_at < ? AND endpoint NOT IN (SELECT value FROM json_each(?)) LIMIT ?)"
)
_CLOSE_ORDER = "UPDATE orders SET closed_at = COALESCE(closed_at, ?) WHERE order_id = ?"
_PRUNE_MARKS = (
    "DELETE FROM tag_marks WHERE (link, machine_id, tag) IN"
    " (SELECT link, machine_id, tag FROM tag_marks WHERE updated_at < ? LIMIT ?)"
)
_PRUNE_GAPS = (
    "DELETE FROM source_gaps WHERE id IN (SELECT id FROM source_gaps WHERE created_at < ? LIMIT ?)"
)
_FREE_PAGES = "PRAGMA freelist_count"
# The page count is a literal: a PRAGMA takes no bound parameters. executescript, because
# sqlite3's execute() steps a PRAGMA once and incremental_vacuum frees one page per step.
_VACUUM_STEP = "PRAGMA incremental_vacuum(2048);"
_CHECKPOINT = "PRAGMA wal_checkpoint(TRUNCATE)"
_RECORD_RUN = (
    "INSERT INTO meta (key, value) VALUES ('pruned_at', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_LAST_RUN = "SELECT value FROM meta WHERE key = 'pruned_at'"

DAY_SECONDS = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each table keeps what is settled, in seconds; ``[store]`` in the config."""

    keep_processed_seconds: float = SETTLED_RETENTION_SECONDS
    """Settled inbox rows, counted from their settlement (``updated_at``)."""
    keep_seen_ids_seconds: float = DEDUPE_HORIZON_SECONDS
    """Message ids for dedupe, counted from their first receipt; see ``inbox``."""
    keep_dead_letters_seconds: float = 30 * DAY_SECONDS
    max_dead_letters: int = 10_000
    """Row cap on dead letters; the oldest go first."""
    keep_idempotency_keys_seconds: float = 7 * DAY_SECONDS
    """Idempotency keys, counted from the first request under each."""
    keep_closed_orders_seconds: float = 30 * DAY_SECONDS
    """Orders of the last-known-good schedule, counted from their closing (``close_order``)."""
    keep_poll_cursors_seconds: float = 30 * DAY_SECONDS
    """Cursors of endpoints not in ``polled_endpoints``, counted from their last read."""
    polled_endpoints: frozenset[str] | None = None
    """The polled endpoints configured now (their cursors stay); None: prune no cursor."""
    keep_source_gaps_seconds: float = 30 * DAY_SECONDS
    """A source tag's mark (its last value received live) not moved, and a gap not filled,
    for this long (``gaps/``): the tag left the config, or its history is gone too."""
    batch_rows: int = 1000
    """Rows deleted per transaction: how long the agent's writers may wait for the lock."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one run removed, per table, and the store's bytes on disk around it."""

    inbox: int
    seen_ids: int
    dead_letters_expired: int
    """Dead letters older than their window."""
    dead_letters_over_cap: int
    """Dead letters within their window but beyond ``max_dead_letters``."""
    bytes_before: int
    bytes_after: int
    seconds: float
    idempotency_keys: int = 0
    orders: int = 0
    poll_cursors: int = 0
    source_gaps: int = 0
    """Tag marks and gaps, together."""

    @property
    def dead_letters(self) -> int:
        return self.dead_letters_expired + self.dead_letters_over_cap

    def removed(self) -> dict[str, int]:
        """Rows removed per table, for logs and metrics."""
        return {
            "inbox": self.inbox,
            "seen_ids": self.seen_ids,
            "dead_letters": self.dead_letters,
            "idempotency_keys": self.idempotency_keys,
            "orders": self.orders,
            "poll_cursors": self.poll_cursors,
            "source_gaps": self.source_gaps,
        }


async def prune(database: Database, policy: RetentionPolicy, now: float) -> PruneReport:
    """Delete what ``policy`` no longer keeps at ``now`` (unix time), then shrink the file."""
    started = time.monotonic()
    bytes_before = bytes_on_disk(database.path)
    batch = max(policy.batch_rows, 1)
    inbox_cutoff = now - policy.keep_processed_seconds
    inbox = await _delete_batches(database, _PRUNE_INBOX, (*SETTLED, inbox_cutoff), batch)
    seen_cutoff = now - policy.keep_seen_ids_seconds
    seen_ids = await _delete_batches(database, _PRUNE_SEEN, (seen_cutoff,), batch)
    dead_cutoff = now - policy.keep_dead_letters_seconds
    expired = await _delete_batches(database, _PRUNE_DEAD, (dead_cutoff,), batch)
    over_cap = await _delete_over_cap(database, policy.max_dead_letters, batch)
    keys_cutoff = now - policy.keep_idempotency_keys_seconds
    keys = await _delete_batches(database, _PRUNE_KEYS, (keys_cutoff,), batch)
    orders_cutoff = now - policy.keep_closed_orders_seconds
    orders = await _delete_batches(database, _PRUNE_ORDERS, (orders_cutoff, *SETTLED), batch)
    cursors = 0
    if policy.polled_endpoints is not None:
        configured = json.dumps(sorted(policy.polled_endpoints))
        params = (now - policy.keep_poll_cursors_seconds, configured)
        cursors = await _delete_batches(database, _PRUNE_CURSORS, params, batch)
    gaps_cutoff = now - policy.keep_source_gaps_seconds
    gaps = await _delete_batches(database, _PRUNE_MARKS, (gaps_cutoff,), batch)
    gaps += await _delete_batches(database, _PRUNE_GAPS, (gaps_cutoff,), batch)
    async with database.write() as transaction:
        await transaction.connection.execute(_RECORD_RUN, (math.ceil(now),))
    await _shrink(database)
    return PruneReport(
        inbox=inbox,
        seen_ids=seen_ids,
        dead_letters_expired=expired,
        dead_letters_over_cap=over_cap,
        bytes_before=bytes_before,
        bytes_after=bytes_on_disk(database.path),
        seconds=time.monotonic() - started,
        idempotency_keys=keys,
        orders=orders,
        poll_cursors=cursors,
        source_gaps=gaps,
    )


async def close_order(database: Database, order_id: str, at: float) -> None:
    """Mark ``order_id`` closed at the plant (ended, aborted, finally confirmed) at ``at``,
    unless it is closed already; from then ``keep_closed_orders_seconds`` counts. A later
    revision from HQ opens it again (``inbox_sqlite._UPSERT_ORDER``)."""
    async with database.write() as transaction:
        await transaction.connection.execute(_CLOSE_ORDER, (at, order_id))


async def last_pruned_at(database: Database) -> float | None:
    """The ``now`` of the last ``prune`` that completed (unix time, rounded up to whole
    seconds), or None if none ever did."""
    async with database.read() as connection:
        rows = list(await connection.execute_fetchall(_LAST_RUN))
    return float(rows[0][0]) if rows else None


def bytes_on_disk(path: Path) -> int:
    """The store file and its WAL, in bytes; a file that is not there counts 0."""
    total = 0
    for name in (path.name, path.name + "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += path.with_name(name).stat().st_size
    return total


async def _delete_batches(database: Database, query: str, params: Sequence[Any], batch: int) -> int:
    """Run ``query`` (its last parameter a LIMIT) in transactions of ``batch`` rows until a
    batch comes back short; return the rows deleted."""
    deleted = 0
    while True:
        async with database.write() as transaction:
            cursor = await transaction.connection.execute(query, (*params, batch))
            count = cursor.rowcount
            await cursor.close()
        deleted += count
        if count < batch:
            return deleted


async def _delete_over_cap(database: Database, cap: int, batch: int) -> int:
    """Delete the oldest dead letters beyond ``cap``, ``batch`` at a time; counted inside each
    transaction, so one stored meanwhile is counted too."""
    deleted = 0
    while True:
        async with database.write() as transaction:
            connection = transaction.connection
            ((count,),) = await connection.execute_fetchall(_COUNT_DEAD)
            excess = min(int(count) - cap, batch)
            if excess <= 0:
                return deleted
            cursor = await connection.execute(_PRUNE_OLDEST_DEAD, (excess,))
            deleted += cursor.rowcount
            await cursor.close()


async def _shrink(database: Database) -> None:
    """Give free pages back to the disk, one bounded step per lock, then fold the WAL in.

    The TRUNCATE checkpoint waits (busy_timeout, 5 s at most) for a read in another process,
    such as a ``plantsync buffer`` command, to end; the agent's own writers wait with it.
    """
    free = await _free_pages(database)
    while free > 0:
        async with database.read() as connection:
            await connection.executescript(_VACUUM_STEP)
        left = await _free_pages(database)
        if left >= free:  # not an incremental store (its conversion failed): nothing to give
            break
        free = left
    async with database.read() as connection:
        await connection.execute_fetchall(_CHECKPOINT)


async def _free_pages(database: Database) -> int:
    async with database.read() as connection:
        ((free,),) = await connection.execute_fetchall(_FREE_PAGES)
    return int(free)

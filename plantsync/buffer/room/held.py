"""What rows outside the outbox hold against the store's cap, and dead letters' own ceiling.

    Held(dead_letters, keys)          bytes, beside the outbox's own rows (``SqliteOutbox``)
      dead_letters   payload (the kept prefix) + topic + reason + 64 each
      keys           every column, the (kind, key) pair twice (its UNIQUE index), + 96 each

Each table has a generated column ``counted`` (migration 8, ``database.py``) that says what
its row counts, so the formula is written once. Both are counted like outbox rows: summed
once at open, then moved by each insert and delete in the transaction that makes it
(``RETURNING counted``), and summed anew after retention deleted in bulk. A key's 96 bytes
beyond its columns are the record headers and rowids of the row and its two index entries
and the age index's created_at: measured against SQLite's pages (dbstat) by
``tests/buffer/test_room.py::test_a_key_row_counts_what_it_takes_on_disk``.

Dead letters are evidence, not business: they hold at most ``dead_letter_cap`` bytes (by
default a tenth of the cap, ``store.max_dead_letter_bytes``); storing one beyond that evicts
the oldest dead letters first (``evict_dead_letters``). A business row (or an idempotency
key) that finds no telemetry left to evict takes the room of the oldest dead letters too
before it is refused. Business rows and keys are never evicted. Every evicted dead letter is
counted (``meta.dead_letters_evicted_total``) and logged once its transaction commits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from plantsync.buffer.database import Transaction

log = logging.getLogger(__name__)

__all__ = [
    "EVICTED_TOTAL",
    "EvictedDeadLetter",
    "Held",
    "evict_dead_letters",
    "held_at_load",
    "held_now",
    "log_evicted",
    "room_from_dead_letters",
]

_SUM = (
    "SELECT (SELECT COALESCE(SUM(counted), 0) FROM dead_letters),"
    " (SELECT COALESCE(SUM(counted), 0) FROM idempotency_keys)"
)
_OLDEST_DEAD = (
    "SELECT id, message_id, reason_code, counted FROM dead_letters WHERE id > ? ORDER BY id LIMIT ?"
)
_DELETE_DEAD_UP_TO = "DELETE FROM dead_letters WHERE id <= ?"
_COUNT_EVICTED = (
    "INSERT INTO meta (key, value) VALUES ('dead_letters_evicted_total', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
)
EVICTED_TOTAL = "SELECT COALESCE(SUM(value), 0) FROM meta WHERE key = 'dead_letters_evicted_total'"
_PAGE = 64
_COUNTED_SINCE = 8
"""The schema version (``schema.migrations.MIGRATIONS``) that added the ``counted`` columns."""


@dataclass(frozen=True, slots=True)
class Held:
    """Bytes rows outside the outbox hold against the store's cap."""

    dead_letters: int = 0
    keys: int = 0
    """Idempotency keys (``buffer/idempotency``)."""

    @property
    def total(self) -> int:
        return self.dead_letters + self.keys

    def plus(self, *, dead_letters: int = 0, keys: int = 0) -> Held:
        return Held(self.dead_letters + dead_letters, self.keys + keys)


@dataclass(frozen=True, slots=True)
class EvictedDeadLetter:
    """One dead letter evicted for room: what the log line names."""

    dead_letter_id: int
    message_id: str | None
    reason_code: str
    size: int


async def held_at_load(connection: aiosqlite.Connection) -> Held:
    """``held_now``, or nothing held on a database of a schema before the ``counted`` columns
    (an outbox opened alone over an old file, as a migration test does)."""
    ((version,),) = await connection.execute_fetchall(
        "SELECT user_version FROM pragma_user_version"
    )
    return await held_now(connection) if int(version) >= _COUNTED_SINCE else Held()


async def held_now(connection: aiosqlite.Connection) -> Held:
    """What dead letters and keys hold, counted anew (one scan of each table)."""
    ((dead_letters, keys),) = await connection.execute_fetchall(_SUM)
    return Held(int(dead_letters), int(keys))


async def evict_dead_letters(
    connection: aiosqlite.Connection, excess: int
) -> list[EvictedDeadLetter]:
    """Delete the oldest dead letters until ``excess`` bytes are freed (or none are left),
    count them in ``meta``; return what was evicted, oldest first."""
    evicted: list[EvictedDeadLetter] = []
    freed, last_id = 0, 0
    while freed < excess:
        page = list(await connection.execute_fetchall(_OLDEST_DEAD, (last_id, _PAGE)))
        for dead_letter_id, message_id, reason_code, size in page:
            if freed >= excess:
                break
            evicted.append(EvictedDeadLetter(dead_letter_id, message_id, reason_code, int(size)))
            freed, last_id = freed + int(size), dead_letter_id
        if len(page) < _PAGE:
            break
    if evicted:
        await connection.execute(_DELETE_DEAD_UP_TO, (last_id,))
        await connection.execute(_COUNT_EVICTED, (len(evicted),))
    return evicted


async def room_from_dead_letters(
    transaction: Transaction, excess: int, held: Held, cap: int, *, why: str = "a business message"
) -> Held:
    """Evict the oldest dead letters for ``excess`` bytes in ``transaction``; return what is held
    then. The log line is written once the transaction commits (a rollback evicted nothing)."""
    gone = await evict_dead_letters(transaction.connection, excess)
    after = held.plus(dead_letters=-sum(letter.size for letter in gone))
    if gone:
        transaction.after_commit(lambda: log_evicted(gone, why, after, cap))
    return after


def log_evicted(gone: Sequence[EvictedDeadLetter], why: str, held: Held, cap: int) -> None:
    """One WARNING line per eviction: how many, which ids, their reasons, and why."""
    reasons = ", ".join(
        f"{code} {count}" for code, count in Counter(g.reason_code for g in gone).items()
    )
    log.warning(
        "evicted %d dead letter(s) (ids %d to %d; %s; %d bytes) to make room for %s;"
        " dead letters now hold %d of their %d bytes",
        len(gone),
        gone[0].dead_letter_id,
        gone[-1].dead_letter_id,
        reasons,
        sum(g.size for g in gone),
        why,
        held.dead_letters,
        cap,
    )

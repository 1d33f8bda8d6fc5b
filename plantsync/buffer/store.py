"""The durable store: one SQLite file, one connection, two views of it.

    store = await Store.open(path, max_size_bytes=…)
    store.outbox    the ``Outbox`` (up): SqliteOutbox
    store.inbox     the ``Inbox`` (down), dead letters, last-known-good schedule: SqliteInbox
    store.keys      idempotency keys of what the plant sends up (``idempotency/``)
    store.cursors   the polled MES endpoints' cursors: PollCursors (``polling/``)
    store.gaps      the sources' marks and gaps to backfill: SourceGaps (``gaps/``)
    await store.close()

    await store.prune(policy, now)   retention (``retention.py``): what is settled and old

Both views share the connection and its lock, so ``inbox.settle`` commits a message's new
status, the schedule it applied and its acknowledgements (outbox rows) in one transaction.
``SqliteOutbox.open`` still opens the same file for callers that need only the outbox; the
schema (``schema.migrations.MIGRATIONS``) is the same either way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from plantsync.buffer.archive import ArchivePolicy
from plantsync.buffer.database import Database, OnCorrupt, StoreHealth
from plantsync.buffer.gaps import SourceGaps
from plantsync.buffer.idempotency import IdempotencyKeys
from plantsync.buffer.inbox_sqlite import SqliteInbox
from plantsync.buffer.polling import PollCursors
from plantsync.buffer.retention import (
    PruneReport,
    RetentionPolicy,
    close_order,
    last_pruned_at,
    prune,
)
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.contracts.inbound import KEPT_PREFIX_BYTES


class Store:
    """The outbox and the inbox over one database. Open it with ``await Store.open(…)``.

    Closing either view closes the database; close the store once, after both the uplink and
    the downlink have stopped. Also an async context manager that closes it on exit.
    """

    def __init__(self, database: Database, outbox: SqliteOutbox, inbox: SqliteInbox) -> None:
        self._database = database
        self._outbox = outbox
        self._inbox = inbox
        self._keys = IdempotencyKeys(database, outbox, clock=inbox.clock)
        self._cursors = PollCursors(database, outbox)
        self._gaps = SourceGaps(database, outbox)

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        max_size_bytes: int,
        clock: Callable[[], float] = time.time,
        archive: ArchivePolicy | None = None,
        on_corrupt: OnCorrupt = "raise",
        dead_letter_max_bytes: int = KEPT_PREFIX_BYTES,
        dead_letter_cap: int | None = None,
    ) -> Store:
        """Open (or create) the store at ``path``, owner-only, migrated to the current schema.

        ``max_size_bytes`` caps the outbox (see ``Outbox.add``); ``clock`` stamps what the inbox
        records and decides which retries are due; ``archive`` keeps acknowledged rows for
        replay (``archive.py``); ``on_corrupt="quarantine"`` moves a corrupt file aside and
        starts fresh (``health.quarantine`` then says so) instead of raising ``CorruptStore``.
        A dead letter keeps at most ``dead_letter_max_bytes`` of its message, and dead letters
        count toward ``max_size_bytes``; together at most ``dead_letter_cap`` (default a
        tenth of it), beyond which the oldest are evicted (``room/held.py``).
        """
        database = await Database.open(path, on_corrupt=on_corrupt)
        try:
            outbox = await SqliteOutbox.load(
                database,
                max_size_bytes=max_size_bytes,
                archive=archive,
                dead_letter_cap=dead_letter_cap,
            )
        except BaseException:
            await database.close()
            raise
        inbox = SqliteInbox(
            database, outbox, clock=clock, dead_letter_max_bytes=dead_letter_max_bytes
        )
        return cls(database, outbox, inbox)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return self._database.path

    @property
    def health(self) -> StoreHealth:
        """The file itself: quarantined at start-up, disk full at the last write."""
        return self._database.health

    @property
    def outbox(self) -> SqliteOutbox:
        """The queue from the pipeline to the uplink."""
        return self._outbox

    @property
    def inbox(self) -> SqliteInbox:
        """The queue from the MQTT subscription to the downlink, and what it applied."""
        return self._inbox

    @property
    def keys(self) -> IdempotencyKeys:
        """Idempotency keys: a request from the plant committed once, its answer kept."""
        return self._keys

    @property
    def cursors(self) -> PollCursors:
        """Where each polled MES endpoint goes on from; moved with the outbox in one commit."""
        return self._cursors

    @property
    def gaps(self) -> SourceGaps:
        """Each source tag's last value received live and the gaps to backfill; moved with
        the outbox in one commit."""
        return self._gaps

    async def prune(self, policy: RetentionPolicy, now: float) -> PruneReport:
        """Delete what ``policy`` no longer keeps at ``now`` (never anything pending), in short
        batches, then shrink the file; see ``retention.py``."""
        report = await prune(self._database, policy, now)
        await self._outbox.recount_held()  # dead letters and keys pruned: they no longer count
        return report

    async def close_order(self, order_id: str, at: float) -> None:
        """The plant ended, aborted or finally confirmed ``order_id``: retention counts from
        ``at`` (``store.keep_closed_orders``); a later revision from HQ opens it again."""
        await close_order(self._database, order_id, at)

    async def last_pruned_at(self) -> float | None:
        """The ``now`` of the last completed ``prune`` (unix time), or None if none ever did."""
        return await last_pruned_at(self._database)

    async def close(self) -> None:
        """Close the database; closing twice is harmless."""
        await self._database.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

"""The gaps in each source tag's values, kept with the outbox so a backfill survives restarts.

    Pipeline commit ─▶ GapKeeper.draft() ─▶ live readings: the tag's mark moves; the first of a
                                            session (or one the server flagged Overflow) after a
                                            mark opens a gap (mark, its time)
                                          ─▶ historical readings: the gap they fill moves on
                                          ─▶ settled gaps: deleted
                    ─▶ SourceGaps.commit(records, changes)    one transaction with the outbox
    beside.py ─▶ pending(link) ─▶ HistorySource.history ─▶ Pipeline.submit ─▶ … ─▶ settle

What counts as a gap: for a tag of a link that backfills, the interval between the last value
committed live (its *mark*, durable) and the first value of the tag's next session, both
exclusive. A session is a connection of the link, and the agent's start is a new session of
every link, so an agent stopped or crashed while values changed opens the same gap as a link
that dropped: from the last value sent before the stop to the first received after the start
(what changed later arrives live). A value flagged Overflow opens (mark, its time) for its tag.
A gap's start moves to each of its values as it is committed, so a backfill cut short resumes
after the last value sent (continuation points are not valid across sessions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from plantsync.agent.backfill.bucket import TokenBucket
from plantsync.buffer.base import Record
from plantsync.buffer.gaps import GapChanges, NewGap, SourceGaps, StoredGap, TagKey
from plantsync.drivers.base import Reading


@dataclass
class Draft:
    """What one commit will do, built reading by reading before it commits."""

    changes: GapChanges = field(default_factory=GapChanges)
    continued: set[TagKey] = field(default_factory=set)
    """Tags with a live value in this commit: continuous from it on."""
    broken: set[str] = field(default_factory=set)
    """Links whose session started in this commit: none of their tags continuous before it."""
    opened_links: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.changes or self.continued or self.broken)


class GapKeeper:
    """Turns the pipeline's readings into marks and gaps (``draft`` / ``commit``) and gives the
    backfill the gaps of its link (``pending``, ``wait_opened``, ``filling``)."""

    def __init__(
        self, book: SourceGaps, links: Collection[str], *, bucket: TokenBucket | None = None
    ) -> None:
        self._book, self._links = book, frozenset(links)
        self._marks: dict[TagKey, datetime] = {}
        self._continuous: set[TagKey] = set()
        self._filling: dict[str, dict[tuple[str, str], list[StoredGap]]] = {}
        """Per link, the gaps its backfill reads now, by (machine, tag)."""
        self._opened: dict[str, asyncio.Event] = {}
        self.bucket = bucket
        """Paces the historical messages (``[uplink].backfill_rate``); None: not paced here."""

    async def load(self) -> None:
        """The marks as the last run left them: every tag's first value opens its gap."""
        self._marks = await self._book.marks()

    def backfills(self, link: str) -> bool:
        return link in self._links

    def draft(self) -> Draft:
        return Draft()

    def session_started(self, draft: Draft, link: str) -> None:
        draft.broken.add(link)
        draft.continued = {key for key in draft.continued if key[0] != link}

    def settle(self, draft: Draft, gap_ids: Iterable[int]) -> None:
        draft.changes.settled.extend(gap_ids)

    def add(self, draft: Draft, link: str, readings: Sequence[Reading]) -> None:
        """Record what ``readings`` of ``link`` do to its marks and gaps."""
        if link not in self._links:
            return
        for found in readings:
            moment = found.source_time
            if moment is None:
                continue
            key = (link, found.machine_id, found.tag)
            if found.historical:
                self._fill(draft, key, moment)
            else:
                self._live(draft, key, moment, overflow=found.overflow)

    def _live(self, draft: Draft, key: TagKey, moment: datetime, *, overflow: bool) -> None:
        changes = draft.changes
        mark = changes.marks.get(key) or self._marks.get(key)
        continuous = key in draft.continued or (
            key[0] not in draft.broken and key in self._continuous
        )
        if mark is not None and moment > mark and (overflow or not continuous):
            reason = "overflow" if continuous else "disconnect"
            changes.opened.append(NewGap(*key, mark, moment, reason))
            draft.opened_links.add(key[0])
        draft.continued.add(key)
        if mark is None or moment > mark:
            changes.marks[key] = moment

    def _fill(self, draft: Draft, key: TagKey, moment: datetime) -> None:
        for gap in self._filling.get(key[0], {}).get(key[1:], ()):
            if gap.start < moment < gap.end:
                filled = draft.changes.filled
                filled[gap.id] = max(filled.get(gap.id, moment), moment)
                return

    async def commit(self, records: Sequence[Record], draft: Draft) -> int:
        """Commit ``records`` with the draft's changes; what they hold in memory moves only
        once the transaction committed."""
        dropped = 0
        if records or draft.changes:
            dropped = await self._book.commit(records, draft.changes, time.time())
        self._marks.update(draft.changes.marks)
        self._continuous = {
            key for key in self._continuous if key[0] not in draft.broken
        } | draft.continued
        for link in draft.opened_links:
            self._opened.setdefault(link, asyncio.Event()).set()
        return dropped

    async def pending(self, link: str) -> list[StoredGap]:
        """``link``'s gaps not yet filled, oldest first."""
        self._opened.setdefault(link, asyncio.Event()).clear()
        return await self._book.pending(link)

    async def wait_opened(self, link: str) -> None:
        """Until a commit opens a gap of ``link`` (after the last ``pending``)."""
        await self._opened.setdefault(link, asyncio.Event()).wait()

    def filling(self, link: str, gaps: list[StoredGap]) -> None:
        """The gaps ``link``'s backfill reads now: its historical readings move them on."""
        by_tag: dict[tuple[str, str], list[StoredGap]] = {}
        for gap in gaps:
            by_tag.setdefault((gap.machine_id, gap.tag), []).append(gap)
        self._filling[link] = by_tag

    async def pace(self, messages: int) -> None:
        """Wait until the bucket has room for ``messages`` historical messages; spend them."""
        bucket = self.bucket
        if bucket is None:
            return
        bucket.available()
        while (delay := bucket.wait(messages)) > 0:
            await asyncio.sleep(delay)
            bucket.available()
        bucket.take(min(messages, bucket.available()))

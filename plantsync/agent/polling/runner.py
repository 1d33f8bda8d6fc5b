"""The running object of one polled MES endpoint: schedule, pages, cursor, counters, health.

    supervise(health, runner.session, backoff)            one link per endpoint, mes-poll:<name>
      session: connect ─▶ poll (catch up) ─▶ up() ─▶ { wait until due ─▶ poll } …
      poll:    cursor from the store ─▶ { pace ─▶ fetch a page ─▶ dead-letter the records that
               did not map ─▶ ONE commit: the page's messages + the cursor past them } while
               the MES has more, at most max_pages

    due:  interval   asyncio.sleep (monotonic: a wall-clock step neither delays nor repeats it)
          cron       a job on the agent's one APScheduler, in the plant's time zone (each
                     wall-clock time once across DST changes: ``schedule.py``); it only
                     sets an event, the poll runs in the link's own task (coalesced: a burst of
                     missed fire times, or one while the link was down, is one poll)

What goes wrong, and what it costs: a bad answer (malformed, oversized, no records array) is a
dead letter with the endpoint and an excerpt, counted, and the cursor stays where it was; the
next poll asks again. A record that does not map is a dead letter too, and the cursor moves past
it (one bad record must not stop the endpoint forever). 429 and 5xx end the session: the
supervisor waits (at least Retry-After), reconnects, and the catch-up poll goes on from the
stored cursor. A full outbox (business rows only) moves nothing: the next poll tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from typing import TYPE_CHECKING, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from plantsync.agent.polling.schedule import WallClockCron
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.base import Lane, Record
from plantsync.buffer.polling import CursorState, PollCursors
from plantsync.buffer.store import Store
from plantsync.contracts import Topics, new_message_id
from plantsync.contracts.envelope import Contract
from plantsync.contracts.mes import MES_MESSAGES, MesMessageKind
from plantsync.drivers.base import Connection
from plantsync.drivers.mespoll import BadAnswer
from plantsync.errors import StoreFull

if TYPE_CHECKING:  # httpx: imported by the driver at its first connect, after READY=1
    from plantsync.drivers.mespoll.source import Page

log = logging.getLogger(__name__)

_KINDS: dict[type[Contract], MesMessageKind] = {
    kind.payload: kind for kind in MES_MESSAGES.values()
}


class Poller(Connection, Protocol):
    """What the runner needs of a polling driver (``drivers.mespoll.MesPollSource``)."""

    async def fetch(
        self, cursor: str | None, etag: str | None = None, last_modified: str | None = None
    ) -> Page:
        """One request from ``cursor``; raises BadAnswer, SourceUnavailable, LinkMisconfigured."""
        ...


class DeadLetters(Protocol):
    """Where bad answers and records go (``buffer.SqliteInbox`` is one)."""

    async def dead_letter(
        self,
        topic: str,
        payload: bytes,
        reason_code: str,
        reason: str,
        *,
        received_at: float,
        message_id: str | None,
    ) -> int: ...


@dataclass(frozen=True)
class PollEndpoint:
    """One endpoint as the agent runs it; ``app.py`` builds it from ``[[mes_poll]]``."""

    name: str
    """The link's name, ``mes-poll:<name>``: health, logs, the messages' ``source``."""
    connect: Callable[[], Poller]
    interval: float | None
    cron: str | None
    max_pages: int = 100
    min_request_interval: float = 0.0
    where: str = ""
    """The method and URL, for dead letters."""


@dataclass
class PollStats:
    """What the link counted; shown as the link's counters on the status page and in metrics."""

    polls: int = 0
    pages: int = 0
    records: int = 0
    rejected: int = 0
    bad_answers: int = 0
    not_modified: int = 0
    dropped: int = 0
    store_full: int = 0
    bytes: int = 0

    def counters(self) -> dict[str, int]:
        return {name: value for name, value in vars(self).items() if isinstance(value, int)}


class PollRunner:
    """Runs one endpoint: ``session`` is what ``supervise`` runs; ``poll`` is one poll."""

    def __init__(
        self,
        endpoint: PollEndpoint,
        *,
        cursors: PollCursors,
        dead_letters: DeadLetters,
        topics: Topics,
        sequencer: Sequencer,
        outbox_changed: asyncio.Event,
        health: LinkHealth,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.endpoint, self.health, self.stats = endpoint, health, PollStats()
        self._cursors, self._dead_letters = cursors, dead_letters
        self._topics, self._sequencer, self._outbox_changed = topics, sequencer, outbox_changed
        self._clock = clock
        self._due = asyncio.Event()
        self._last_request: float | None = None

    def schedule(self, scheduler: AsyncIOScheduler, timezone: tzinfo | None) -> None:
        """For a cron endpoint: a job on the agent's one scheduler that marks a poll due."""
        if self.endpoint.cron is None:
            return
        scheduler.add_job(
            self._fire,
            WallClockCron.of(self.endpoint.cron, timezone or scheduler.timezone),
            id=self.endpoint.name,
            name=self.endpoint.name,
            coalesce=True,
            misfire_grace_time=None,
            max_instances=1,
            replace_existing=True,
        )

    async def session(self, up: Callable[[], None]) -> None:
        """Connect, catch up from the stored cursor, then poll whenever due, until cancelled."""
        async with self.endpoint.connect() as poller:
            await self.poll(poller)
            up()
            while True:
                await self._wait_until_due()
                await self.poll(poller)

    async def poll(self, poller: Poller) -> int:
        """Read pages from the stored cursor while the MES has more; the messages committed."""
        self.stats.polls += 1
        state = await self._cursors.get(self.endpoint.name) or CursorState()
        committed = 0
        try:
            for _ in range(self.endpoint.max_pages):
                await self._pace()
                try:
                    page = await poller.fetch(state.cursor, state.etag, state.last_modified)
                except BadAnswer as exc:
                    await self._bad_answer(exc)
                    return committed
                self.health.touch()
                if page.not_modified:
                    self.stats.not_modified += 1
                    return committed
                following = CursorState(page.cursor, page.etag, page.last_modified)
                if following == state and not page.payloads and not page.rejected:
                    break  # nothing new and nothing to remember: no write, no fsync
                state = following
                taken = await self._commit(page, state)
                if taken is None:
                    return committed
                committed += taken
                if not page.more:
                    break
        finally:
            self.health.counters = self.stats.counters()
        return committed

    async def _commit(self, page: Page, state: CursorState) -> int | None:
        """The page's messages and the cursor past them; None when the outbox is full."""
        self.stats.pages += 1
        self.stats.bytes += page.size
        for rejected in page.rejected:
            # Before the commit: a crash in between re-reads the page and records it twice,
            # never loses it.
            await self._dead_letter(rejected.excerpt, "schema-violation", rejected.reason)
            self.stats.rejected += 1
        try:
            async with self._sequencer.assigning() as next_seq:
                records = [self._record(payload, next_seq) for payload in page.payloads]
                dropped = await self._cursors.commit(
                    self.endpoint.name, state, records, self._clock()
                )
        except StoreFull as exc:
            self.stats.store_full += 1
            log.warning("%s: page not taken, the outbox is full: %s", self.endpoint.name, exc)
            return None
        self.stats.records += len(records)
        self.stats.dropped += dropped
        if records:
            self._outbox_changed.set()
        return len(records)

    def _record(self, payload: Contract, next_seq: Callable[[str], int]) -> Record:
        kind = _KINDS[type(payload)]
        stream = kind.stream(payload)
        message = kind.message.model_validate(
            {
                "id": new_message_id(),
                "site": self._topics.site,
                "source": self.endpoint.name,
                "stream": stream,
                "seq": next_seq(stream),
                "event_time": kind.event_time(payload),
                "payload": payload,
            }
        )
        lane = Lane.BUSINESS if kind.business else Lane.TELEMETRY
        body = message.model_dump_json().encode()
        topic = kind.topic(self._topics, payload)
        return Record(message.id, lane, stream, message.seq, topic, body, self._clock())

    async def _bad_answer(self, error: BadAnswer) -> None:
        self.stats.bad_answers += 1
        log.warning("%s: bad answer, dead-lettered: %s", self.endpoint.name, error.detail)
        await self._dead_letter(error.excerpt, str(error.reason_code), error.detail)

    async def _dead_letter(self, excerpt: bytes, reason_code: str, reason: str) -> None:
        where = f"{self.endpoint.where}: " if self.endpoint.where else ""
        await self._dead_letters.dead_letter(
            self.endpoint.name,
            excerpt,
            reason_code,
            f"{where}{reason}"[:1000],
            received_at=self._clock(),
            message_id=None,
        )

    async def _pace(self) -> None:
        """The rate limit: at least ``min_request_interval`` between two requests."""
        gap = self.endpoint.min_request_interval
        now = time.monotonic()
        if self._last_request is not None and gap > 0:
            await asyncio.sleep(max(0.0, self._last_request + gap - now))
        self._last_request = time.monotonic()

    async def _wait_until_due(self) -> None:
        if self.endpoint.interval is not None:
            await asyncio.sleep(self.endpoint.interval)
            return
        await self._due.wait()
        self._due.clear()

    async def _fire(self) -> None:
        """The scheduled job: mark a poll due (a coroutine, so it runs on the event loop)."""
        self._due.set()


def runners(
    endpoints: Mapping[str, PollEndpoint],
    store: Store,
    topics: Topics,
    sequencer: Sequencer,
    outbox_changed: asyncio.Event,
    health: Mapping[str, LinkHealth],
    scheduler: AsyncIOScheduler,
    timezone: tzinfo | None,
) -> dict[str, PollRunner]:
    """The running object of every endpoint over the open ``store``, each cron endpoint's job
    on the agent's ``scheduler``."""
    built = {}
    for name, endpoint in endpoints.items():
        runner = PollRunner(
            endpoint,
            cursors=store.cursors,
            dead_letters=store.inbox,
            topics=topics,
            sequencer=sequencer,
            outbox_changed=outbox_changed,
            health=health[name],
        )
        runner.schedule(scheduler, timezone)
        built[name] = runner
    return built

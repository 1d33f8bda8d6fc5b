"""From readings to durable machine.state messages: the single writer of the outbox.

    sources ──submit(batch)──▶ [bounded queue] ──▶ group by machine ──▶ seq ──▶ outbox.add
                                                   (one message per        (one transaction
                                                    machine per batch)      per group commit)

Group commit: the pipeline takes one item, then everything already queued up to
``commit_batch`` rows, and commits them in one transaction. Under load many batches share one
fsync; when idle a single change is committed at once, so durability never waits on a timer.

Sequence numbers come from the agent's one ``Sequencer`` (started from the outbox's
``last_sequences()``), which adopts a stream's numbers only once the rows that carry them are
committed, so the per-stream sequence has no gaps except where telemetry was evicted (and that
is counted). The pipeline is the only writer of the ``machine/<id>`` streams.

With a ``GapKeeper`` (``agent/backfill/gaps.py``) each commit also moves the tags' marks and
the gaps of the links that backfill, in the same transaction as the rows (``SourceGaps``).

Metadata (a tag's data type, engineering units, EURange) comes from the sources once per
connection (``describe``) and rides on snapshots only, never on changes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from plantsync.agent.backfill.gaps import Draft, GapKeeper
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.base import Lane, Outbox, Record
from plantsync.contracts import (
    MACHINE_STATE_VERSION,
    MachineState,
    MachineStateMessage,
    TagMetadata,
    TagValue,
    Topics,
    machine_stream,
    new_message_id,
)
from plantsync.drivers.base import Reading
from plantsync.errors import StoreError

log = logging.getLogger(__name__)

NextSeq = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class _Batch:
    source: str
    readings: Sequence[Reading]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Ask for a full snapshot of every machine, in order with the changes around it."""


@dataclass(frozen=True, slots=True)
class _GapMark:
    """In order with the batches: ``link``'s new session begins here (``reset``), and the
    gaps ``settled`` are done; ``done`` resolves once this commit ended."""

    link: str
    reset: bool
    settled: tuple[int, ...]
    done: asyncio.Future[None]


_Item = _Batch | _Snapshot | _GapMark


@dataclass
class PipelineCounters:
    readings: int = 0
    messages: int = 0
    commits: int = 0
    dropped: int = 0
    """Telemetry the outbox shed to stay under its size cap (evicted or refused)."""
    store_errors: int = 0


class Pipeline:
    """Maps readings to machine.state messages and commits them to the outbox."""

    def __init__(
        self,
        outbox: Outbox,
        topics: Topics,
        sequencer: Sequencer,
        *,
        commit_batch: int = 500,
        queue_size: int = 1000,
        gaps: GapKeeper | None = None,
    ) -> None:
        self._outbox, self._topics, self._sequencer = outbox, topics, sequencer
        self.gaps = gaps
        """The marks and gaps of the sources that backfill; None: no backfill."""
        self._commit_batch = commit_batch
        # Bounded: when the store falls behind, submit() waits, and the pressure reaches the
        # sources' own bounded queues, which count what they drop.
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue(queue_size)
        self._latest: dict[str, dict[str, TagValue]] = defaultdict(dict)
        self._sources: dict[str, str] = {}
        self._metadata: dict[str, dict[str, TagMetadata]] = defaultdict(dict)
        self.committed = asyncio.Event()
        """Set after every commit; the uplink clears it and waits on it when it has nothing."""
        self.counters = PipelineCounters()

    def latest(self) -> dict[str, dict[str, TagValue]]:
        """The latest value of each tag per machine, as received since start (a copy)."""
        return {machine: dict(tags) for machine, tags in self._latest.items()}

    def describe(self, metadata: Mapping[tuple[str, str], TagMetadata]) -> None:
        """What a source's tags mean ((machine, tag) -> metadata), for the next snapshots."""
        for (machine_id, tag), described in metadata.items():
            self._metadata[machine_id][tag] = described

    async def submit(self, source: str, readings: Sequence[Reading]) -> None:
        """Queue one notification batch from ``source``; waits while the queue is full."""
        if readings:
            await self._queue.put(_Batch(source, readings))

    async def session_started(self, source: str) -> None:
        """``source`` connected again: the first value of each of its tags committed after
        the batches queued so far opens a gap from the tag's mark. Returns once committed."""
        await self._gap_mark(source, reset=True, settled=())

    async def settle(self, source: str, gap_ids: Sequence[int]) -> None:
        """The gaps ``gap_ids`` are done: deleted once the batches queued so far are
        committed (an empty list: only wait for them). Returns once committed."""
        await self._gap_mark(source, reset=False, settled=tuple(gap_ids))

    async def _gap_mark(self, source: str, *, reset: bool, settled: tuple[int, ...]) -> None:
        if self.gaps is None:
            return
        done = asyncio.get_running_loop().create_future()
        await self._queue.put(_GapMark(source, reset, settled, done))
        await done

    async def request_snapshot(self) -> None:
        await self._queue.put(_Snapshot())

    async def close(self) -> None:
        """Ask ``run`` to commit what is queued and return."""
        await self._queue.put(None)

    async def run(self) -> None:
        """Commit queued items until ``close()``; store errors are counted and logged once."""
        while True:
            items = [await self._queue.get()]
            while len(items) < self._commit_batch and not self._queue.empty():
                items.append(self._queue.get_nowait())
            closing = items[-1] is None
            await self._commit([item for item in items if item is not None])
            if closing:
                return

    async def _commit(self, items: list[_Item]) -> None:
        draft = self.gaps.draft() if self.gaps is not None else None
        records: list[Record] = []
        try:
            # The numbers are adopted only if the block ends without error: after the commit.
            async with self._sequencer.assigning() as next_seq:
                records = self._records(items, next_seq, draft)
                if self.gaps is not None and draft is not None and (records or draft):
                    dropped = await self.gaps.commit(records, draft)
                elif not records:
                    return
                else:
                    dropped = await self._outbox.add(records)
        except StoreError as exc:
            # Telemetry only: the outbox refuses it only when it cannot write at all.
            self.counters.store_errors += 1
            self.counters.dropped += len(records)
            if self.counters.store_errors == 1 or self.counters.store_errors % 1000 == 0:
                log.error("outbox refused %d messages: %s", len(records), exc)
            return
        finally:
            for item in items:
                if isinstance(item, _GapMark) and not item.done.done():
                    item.done.set_result(None)
        self.counters.dropped += dropped
        self.counters.messages += len(records)
        self.counters.commits += 1
        if records:
            self.committed.set()

    def _records(
        self, items: Iterable[_Item], next_seq: NextSeq, draft: Draft | None = None
    ) -> list[Record]:
        records: list[Record] = []
        for item in items:
            if isinstance(item, _Snapshot):
                records.extend(self._snapshot_records(next_seq))
            elif isinstance(item, _GapMark):
                self._gap_mark_into(item, draft)
            else:
                if self.gaps is not None and draft is not None:
                    self.gaps.add(draft, item.source, item.readings)
                records.extend(self._change_records(item, next_seq))
        return records

    def _gap_mark_into(self, item: _GapMark, draft: Draft | None) -> None:
        if self.gaps is None or draft is None:
            return
        if item.reset:
            self.gaps.session_started(draft, item.link)
        self.gaps.settle(draft, item.settled)

    def _change_records(self, batch: _Batch, next_seq: NextSeq) -> list[Record]:
        self.counters.readings += len(batch.readings)
        by_machine: dict[tuple[str, bool], list[TagValue]] = defaultdict(list)
        for reading in batch.readings:
            value = _tag_value(reading)
            by_machine[(reading.machine_id, reading.historical)].append(value)
            if reading.historical:
                continue  # a value from history is older than the latest one received live
            self._latest[reading.machine_id][reading.tag] = value
            self._sources[reading.machine_id] = batch.source
        return [
            self._record(batch.source, machine, values, "change", next_seq, historical=historical)
            for (machine, historical), values in by_machine.items()
        ]

    def _snapshot_records(self, next_seq: NextSeq) -> list[Record]:
        return [
            self._record(self._sources[machine], machine, list(tags.values()), "snapshot", next_seq)
            for machine, tags in self._latest.items()
        ]

    def _record(
        self,
        source: str,
        machine_id: str,
        values: list[TagValue],
        kind: str,
        next_seq: NextSeq,
        *,
        historical: bool = False,
    ) -> Record:
        stream = machine_stream(machine_id)
        seq = next_seq(stream)
        times = [value.source_time for value in values if value.source_time is not None]
        described = self._metadata.get(machine_id, {}) if kind == "snapshot" else {}
        metadata = {v.tag: described[v.tag] for v in values if v.tag in described} or None
        message = MachineStateMessage(
            id=new_message_id(),
            schema_version=MACHINE_STATE_VERSION,
            site=self._topics.site,
            source=source,
            stream=stream,
            seq=seq,
            event_time=max(times) if times else datetime.now(UTC),
            historical=historical,
            payload=MachineState(
                machine_id=machine_id,
                kind="snapshot" if kind == "snapshot" else "change",
                values=values,
                metadata=metadata,
            ),
        )
        return Record(
            message_id=message.id,
            lane=Lane.TELEMETRY,
            stream=stream,
            seq=seq,
            topic=self._topics.machine_state(machine_id),
            payload=message.model_dump_json(exclude_defaults=False).encode(),
            created_at=time.time(),
        )


def _tag_value(reading: Reading) -> TagValue:
    return TagValue(
        tag=reading.tag,
        value=reading.value,
        quality=reading.quality,
        status_code=reading.status_code,
        source_time=reading.source_time,
    )

"""Any sequence of add / claim / ack / nack / crash-and-reopen keeps the outbox's promises.

Each back-end is driven side by side with ``OutboxModel``, the contract in its plainest form:
nothing acknowledged comes back, nothing unacknowledged (and not evicted) is lost, each lane
keeps its order, and evictions, sizes and sequences add up.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from plantsync.buffer.base import Lane, LaneStats, Record
from plantsync.errors import StoreFull
from tests.buffer.harness import BACKENDS, Backend, OutboxHarness

CAP = 2_000
"""Room for roughly 5 to 25 rows, so eviction and StoreFull happen often."""

T = TypeVar("T")

SETTINGS = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,  # fsync times on a shared machine vary too much for a deadline
    database=None,  # keep runs reproducible and leave no .hypothesis/ in the repository
    suppress_health_check=[HealthCheck.too_slow],
)

batches = st.lists(
    st.tuples(st.sampled_from(Lane), st.sampled_from("abc"), st.integers(0, 300)),
    max_size=6,
)


@dataclass
class ModelRow:
    record: Record
    claimed: bool = False


@dataclass
class OutboxModel:
    """The outbox contract, one row at a time."""

    max_size_bytes: int
    rows: list[ModelRow] = field(default_factory=list)
    last_sequences: dict[str, int] = field(default_factory=dict)
    evicted_total: int = 0

    def add(self, records: Sequence[Record]) -> int | None:
        """How many rows the add drops, or None for StoreFull (and then nothing changes)."""
        stored = list(self.rows)
        incoming = list(records)
        size = sum(row.record.size for row in stored) + sum(record.size for record in incoming)
        dropped = 0
        while size > self.max_size_bytes:
            victim = _take_next_to_shed(stored, incoming)
            if victim is None:
                return None
            size -= victim.size
            dropped += 1
        self.rows = stored + [ModelRow(record) for record in incoming]
        for record in records:
            self.last_sequences[record.stream] = max(
                record.seq, self.last_sequences.get(record.stream, record.seq)
            )
        self.evicted_total += dropped
        return dropped

    def begin(self, limit: int) -> list[Record]:
        ready = [row for lane in Lane for row in self.rows if row.record.lane == lane]
        claimed = [row for row in ready if not row.claimed][:limit]
        for row in claimed:
            row.claimed = True
        return [row.record for row in claimed]

    def claimed(self) -> list[str]:
        return [row.record.message_id for row in self.rows if row.claimed]

    def ack(self, message_ids: set[str]) -> None:
        self.rows = [row for row in self.rows if row.record.message_id not in message_ids]

    def nack(self, message_ids: set[str]) -> None:
        for row in self.rows:
            row.claimed = row.claimed and row.record.message_id not in message_ids

    def reopen(self) -> None:
        self.nack(set(self.claimed()))

    def lane_stats(self) -> dict[Lane, LaneStats]:
        stats = {}
        for lane in Lane:
            created = [row.record.created_at for row in self.rows if row.record.lane == lane]
            stats[lane] = LaneStats(len(created), min(created, default=None))
        return stats

    def size_bytes(self) -> int:
        return sum(row.record.size for row in self.rows)


def _take_next_to_shed(stored: list[ModelRow], incoming: list[Record]) -> Record | None:
    """Remove and return the next row to shed: stored ready telemetry first, then incoming."""
    for row in stored:
        if row.record.lane == Lane.TELEMETRY and not row.claimed:
            stored.remove(row)
            return row.record
    for record in incoming:
        if record.lane == Lane.TELEMETRY:
            incoming.remove(record)
            return record
    return None


class OutboxMachine(RuleBasedStateMachine):
    """Drives one back-end and the model with the same steps, on a private event loop."""

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.directory = tempfile.TemporaryDirectory()
        self.harness = OutboxHarness(backend, Path(self.directory.name))
        self.outbox = self.run(self.harness.open(CAP))
        self.model = OutboxModel(CAP)
        self.row_ids: dict[str, int] = {}
        self.acked: list[str] = []
        self.next_number = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    @rule(batch=batches)
    def add(self, batch: list[tuple[Lane, str, int]]) -> None:
        records = [self._record(lane, stream, size) for lane, stream, size in batch]
        expected = self.model.add(records)
        if expected is None:
            with pytest.raises(StoreFull):
                self.run(self.outbox.add(records))
        else:
            assert self.run(self.outbox.add(records)) == expected

    @rule(limit=st.integers(0, 12))
    def claim(self, limit: int) -> None:
        claimed = self.run(self.outbox.begin(limit))
        assert [item.record for item in claimed] == self.model.begin(limit)
        self.row_ids.update((item.record.message_id, item.row_id) for item in claimed)

    @precondition(lambda self: self.model.claimed())
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        # Repeated PUBACKs for rows already gone must be harmless, so offer some of those too.
        candidates = self.model.claimed() + self.acked[-3:]
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique=True))
        self.run(self.outbox.ack([self.row_ids[message_id] for message_id in chosen]))
        self.model.ack(set(chosen))
        self.acked.extend(chosen)

    @precondition(lambda self: self.model.claimed())
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        candidates = self.model.claimed()
        chosen = data.draw(st.lists(st.sampled_from(candidates), min_size=1, unique=True))
        self.run(self.outbox.nack([self.row_ids[message_id] for message_id in chosen]))
        self.model.nack(set(chosen))

    @rule()
    def crash_and_reopen(self) -> None:
        self.outbox = self.run(self.harness.reopen())
        self.model.reopen()

    @invariant()
    def stats_and_sequences_match_the_model(self) -> None:
        stats = self.run(self.outbox.stats())
        assert stats.lanes == self.model.lane_stats()
        assert stats.size_bytes == self.model.size_bytes() <= CAP
        assert stats.evicted_total == self.model.evicted_total
        assert self.run(self.outbox.last_sequences()) == self.model.last_sequences

    def teardown(self) -> None:
        try:
            self.run(self.harness.close_all())
        finally:
            self.runner.close()
            self.directory.cleanup()

    def _record(self, lane: Lane, stream: str, payload_size: int) -> Record:
        self.next_number += 1
        number = self.next_number
        return Record(
            message_id=f"m{number}",
            lane=lane,
            stream=stream,
            seq=number,
            topic="t",
            payload=number.to_bytes(4, "big") * (payload_size // 4),
            created_at=float(number % 7),  # not in id order, so "oldest" is really checked
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_outbox_keeps_its_promises_under_any_sequence_of_operations(backend: Backend) -> None:
    # Hypothesis leaves this one function unannotated.
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        lambda: OutboxMachine(backend), settings=SETTINGS
    )

"""The sources' marks and gaps (``buffer/gaps``): kept with the outbox rows in one transaction,
read back after a reopen, moved on, settled, and pruned by retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane
from plantsync.buffer.gaps import GapChanges, NewGap
from plantsync.buffer.retention import RetentionPolicy
from plantsync.buffer.store import Store
from plantsync.errors import StoreFull
from tests.buffer.harness import ROOMY, make_record

T0 = datetime(2026, 12, 3, 12, 0, 0, 123456, tzinfo=UTC)
KEY = ("opcua:line-1", "press-1", "speed")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def test_marks_and_gaps_survive_a_reopen_exactly_to_the_microsecond(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        changes = GapChanges(marks={KEY: at(1)}, opened=[NewGap(*KEY, at(0), at(1), "disconnect")])
        await store.gaps.commit([make_record(1)], changes, now=1000.0)
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        assert await store.gaps.marks() == {KEY: at(1)}
        [gap] = await store.gaps.pending("opcua:line-1")
        assert (gap.machine_id, gap.tag, gap.start, gap.end, gap.reason) == (
            "press-1",
            "speed",
            at(0),
            at(1),
            "disconnect",
        )
        assert await store.gaps.pending("opcua:other") == []
        assert (await store.outbox.stats()).depth == 1


async def test_a_gap_moves_on_only_forward_and_is_gone_once_settled(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        opened = GapChanges(opened=[NewGap(*KEY, at(0), at(10), "overflow")])
        await store.gaps.commit([], opened, now=1000.0)
        [gap] = await store.gaps.pending("opcua:line-1")
        await store.gaps.commit([], GapChanges(filled={gap.id: at(4)}), now=1001.0)
        await store.gaps.commit([], GapChanges(filled={gap.id: at(2)}), now=1002.0)
        [moved] = await store.gaps.pending("opcua:line-1")
        assert moved.start == at(4)
        await store.gaps.commit([], GapChanges(settled=[gap.id]), now=1003.0)
        assert await store.gaps.pending("opcua:line-1") == []


async def test_nothing_moves_when_the_outbox_refuses_the_rows(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=300) as store:
        changes = GapChanges(marks={KEY: at(1)}, opened=[NewGap(*KEY, at(0), at(1), "disconnect")])
        with pytest.raises(StoreFull):
            await store.gaps.commit([make_record(1, Lane.BUSINESS, payload_size=500)], changes, 1.0)
        assert await store.gaps.marks() == {}
        assert await store.gaps.pending("opcua:line-1") == []


async def test_retention_forgets_marks_and_gaps_left_alone_for_30_days(tmp_path: Path) -> None:
    day = 24 * 3600.0
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        old = GapChanges(marks={KEY: at(1)}, opened=[NewGap(*KEY, at(0), at(1), "overflow")])
        await store.gaps.commit([], old, now=0.0)
        recent_key = ("opcua:line-1", "press-2", "speed")
        recent = GapChanges(
            marks={recent_key: at(1)}, opened=[NewGap(*recent_key, at(0), at(1), "disconnect")]
        )
        await store.gaps.commit([], recent, now=20 * day)
        report = await store.prune(RetentionPolicy(), now=31 * day)
        assert report.removed()["source_gaps"] == 2
        assert await store.gaps.marks() == {recent_key: at(1)}
        [kept] = await store.gaps.pending("opcua:line-1")
        assert kept.machine_id == "press-2"

"""The GapKeeper over a real store: which readings open a gap, which move a mark, and the
bucket that paces the historical messages."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from plantsync.agent.backfill.bucket import TokenBucket
from plantsync.agent.backfill.gaps import GapKeeper
from plantsync.buffer.store import Store
from plantsync.contracts.machine import Quality
from plantsync.drivers.base import Reading
from tests.buffer.harness import ROOMY

LINK = "opcua:line-1"
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def live(seconds: float, *, overflow: bool = False, tag: str = "speed") -> Reading:
    return Reading("press-1", tag, seconds, Quality.GOOD, 0, T0 + timedelta(seconds=seconds),
                   overflow=overflow)  # fmt: skip


async def commit(keeper: GapKeeper, *readings: Reading, restart: bool = False) -> None:
    draft = keeper.draft()
    if restart:
        keeper.session_started(draft, LINK)
    keeper.add(draft, LINK, readings)
    await keeper.commit([], draft)


async def test_the_first_value_after_a_restart_or_reconnect_opens_a_gap_from_the_mark(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        keeper = GapKeeper(store.gaps, [LINK])
        await keeper.load()
        await commit(keeper, live(1), live(2))
        assert await keeper.pending(LINK) == []  # nothing before: no mark, no gap
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        keeper = GapKeeper(store.gaps, [LINK])
        await keeper.load()  # an agent start: every tag starts a new session
        await commit(keeper, live(5), live(6))
        await commit(keeper, live(8), restart=True)  # a reconnect
        await commit(keeper, live(8), restart=True)  # unchanged since: nothing missed
        found = [(g.start, g.end, g.reason) for g in await keeper.pending(LINK)]
    assert found == [
        (T0 + timedelta(seconds=2), T0 + timedelta(seconds=5), "disconnect"),
        (T0 + timedelta(seconds=6), T0 + timedelta(seconds=8), "disconnect"),
    ]


async def test_an_overflow_opens_a_gap_only_for_its_tag_and_other_links_keep_none(
    tmp_path: Path,
) -> None:
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        keeper = GapKeeper(store.gaps, [LINK])
        await commit(keeper, live(1), live(1, tag="temperature"))
        await commit(keeper, live(4, overflow=True), live(4, tag="temperature"))
        draft = keeper.draft()
        keeper.add(draft, "opcua:no-backfill", [live(9, overflow=True)])
        await keeper.commit([], draft)
        [gap] = await keeper.pending(LINK)
        assert (gap.tag, gap.start, gap.end, gap.reason) == (
            "speed",
            T0 + timedelta(seconds=1),
            T0 + timedelta(seconds=4),
            "overflow",
        )
        assert await store.gaps.marks() == {
            (LINK, "press-1", "speed"): T0 + timedelta(seconds=4),
            (LINK, "press-1", "temperature"): T0 + timedelta(seconds=4),
        }


async def test_historical_messages_are_paced_within_the_backfill_bucket(tmp_path: Path) -> None:
    rate = 40
    async with await Store.open(tmp_path / "store.db", max_size_bytes=ROOMY) as store:
        keeper = GapKeeper(store.gaps, [LINK], bucket=TokenBucket(rate))
        times = []
        for _ in range(100):
            await keeper.pace(1)
            times.append(time.monotonic())
    for first in range(len(times)):
        for last in range(first, len(times)):
            spent = last - first + 1
            assert spent <= rate + rate * (times[last] - times[first]) + 1

"""The cursor moves in the same transaction as the page's messages: a restart in the middle of a
poll neither re-reads a page nor misses one; a page the outbox refuses moves nothing."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from plantsync.buffer.store import Store
from plantsync.sim.mes import SimulatedMes
from tests.e2e.support import eventually
from tests.mespoll.conftest import endpoint, outbox_messages, polled, runner


async def test_a_restart_in_the_middle_of_a_poll_leaves_no_gap_and_no_duplicate(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    for _ in range(23):
        mes.add_downtime("press-1")
    # Half a second between requests: the test sees page 2 committed before page 3 is asked for.
    config = endpoint(mes, "downtime", query={"limit": "5"}, min_request_interval="500ms")

    async with polled(store, config) as (poll, source):
        reading = asyncio.create_task(poll.poll(source))
        await eventually(lambda: poll.stats.pages >= 2, within=10)
        mes.faults.delay = 30.0  # the next request hangs: the agent stops in the middle
        await eventually(lambda: len(mes.requests) >= 3, within=10)
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    read_before = poll.stats.records
    mes.faults.delay = 0.0

    async with polled(store, config.model_copy(update={"min_request_interval": timedelta(0)})) as (
        poll,
        source,
    ):
        await poll.poll(source)

    messages = await outbox_messages(store)
    assert read_before == 10
    assert [m["payload"]["downtime_id"] for m in messages] == [f"DT-{n}" for n in range(1, 24)]
    assert [m["seq"] for m in messages] == list(range(1, 24))  # one stream, numbered gaplessly


async def test_a_page_the_full_outbox_refuses_moves_neither_messages_nor_cursor(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    for _ in range(10):
        mes.add_downtime("press-1")

    async with runner(store, endpoint(mes, "downtime"), max_size_bytes=2048) as poll:
        async with poll.endpoint.connect() as source:
            assert await poll.poll(source) == 0
        assert poll.stats.store_full == 1

    assert await outbox_messages(store) == []
    async with await Store.open(store, max_size_bytes=2048) as opened:
        assert await opened.cursors.get("mes-poll:downtime") is None

"""Each fault of the simulated MES, over real HTTP, against a runner over a real store: the
source never crashes, the cursor never moves past what was not committed, and nothing is read
twice once committed."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from plantsync.agent.supervisor import Backoff, LinkState, supervise
from plantsync.buffer.store import Store
from plantsync.errors import SourceUnavailable, Throttled
from plantsync.sim.mes import SimulatedMes
from tests.e2e.support import eventually
from tests.mespoll.conftest import dead_letters, endpoint, outbox_messages, polled, runner


def _downtime_ids(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["payload"]["downtime_id"] for m in messages if m["type"] == "equipment.downtime"]


async def test_every_record_is_read_once_across_pages_and_polls(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    for index in range(12):
        mes.add_downtime("press-1", planned=index % 2 == 0)
    config = endpoint(mes, "downtime", query={"limit": "5"})

    async with runner(store, config) as poll, poll.endpoint.connect() as source:
        assert await poll.poll(source) == 12
        mes.add_downtime("press-2")
        assert await poll.poll(source) == 1

    messages = await outbox_messages(store)
    assert _downtime_ids(messages) == [f"DT-{index}" for index in range(1, 14)]
    assert poll.stats.pages == 4  # 5 + 5 + 2, then 1; an empty page moving nothing: no write
    categories = Counter(m["payload"]["category"] for m in messages)
    assert categories == {"planned": 6, "unplanned": 7}


async def test_downtime_is_business_and_throughput_is_telemetry_in_the_outbox(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_throughput("press-1", good=30, scrap=2)
    mes.add_downtime("press-1")

    for name in ("throughput", "downtime"):
        async with polled(store, endpoint(mes, name)) as (poll, source):
            await poll.poll(source)

    async with await Store.open(store, max_size_bytes=1024**2) as opened:
        claimed = await opened.outbox.begin(10)
    lanes = {item.record.topic.rsplit("/", 1)[1]: item.record.lane.name for item in claimed}
    assert lanes == {"downtime": "BUSINESS", "throughput": "TELEMETRY"}


async def test_a_malformed_answer_is_dead_lettered_and_the_cursor_stays(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    for _ in range(3):
        mes.add_downtime("press-1")
    config = endpoint(mes, "downtime")

    async with runner(store, config) as poll, poll.endpoint.connect() as source:
        mes.faults.malformed = 1
        assert await poll.poll(source) == 0
        assert poll.stats.bad_answers == 1
        assert await poll.poll(source) == 3

    (letter,) = await dead_letters(store)
    topic, reason_code, reason, excerpt = letter
    assert (topic, reason_code) == ("mes-poll:downtime", "malformed-json")
    assert f"GET {config.url}" in reason
    assert excerpt.startswith(b'{"data"')
    assert len(excerpt) <= 1024
    assert _downtime_ids(await outbox_messages(store)) == ["DT-1", "DT-2", "DT-3"]


async def test_an_oversized_answer_is_not_read_past_the_cap(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_downtime("press-1")
    mes.faults.oversized, mes.faults.oversized_bytes = 1, 8 * 1024**2

    async with polled(store, endpoint(mes, "downtime", max_response_size="64KiB")) as (
        poll,
        source,
    ):
        assert await poll.poll(source) == 0
        assert await poll.poll(source) == 1

    ((_, reason_code, reason, excerpt),) = await dead_letters(store)
    assert reason_code == "oversized"
    assert "max_response_size (65536 bytes)" in reason
    assert len(excerpt) <= 1024


async def test_a_server_error_ends_the_session_and_moves_no_cursor(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_downtime("press-1")

    async with polled(store, endpoint(mes, "downtime")) as (poll, source):
        mes.faults.status, mes.faults.count = 500, 1
        with pytest.raises(SourceUnavailable, match="500"):
            await poll.poll(source)
        assert await poll.poll(source) == 1


async def test_a_slow_mes_times_out_and_is_read_once_it_answers_again(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_downtime("press-1")

    # The margins are wide (0.5 s against 3 s) so a busy test process cannot make the answer
    # that follows miss its own timeout.
    async with polled(store, endpoint(mes, "downtime", timeout="500ms")) as (poll, source):
        mes.faults.delay = 3.0
        with pytest.raises(SourceUnavailable, match="timed out"):
            await poll.poll(source)
        mes.faults.delay = 0.0
        assert await poll.poll(source) == 1


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_downtime("press-1")
    mes.faults.status, mes.faults.count, mes.faults.retry_after = 429, 1, 1

    async with runner(store, endpoint(mes, "downtime")) as poll:
        started = time.monotonic()
        link = asyncio.create_task(supervise(poll.health, poll.session, Backoff(0.01, 0.05)))
        try:
            await eventually(lambda: poll.health.state is LinkState.UP, within=10)
        finally:
            link.cancel()
        waited = time.monotonic() - started

    assert waited >= 1.0  # the backoff alone would have retried within 0.05 s
    assert poll.health.failures == 1
    assert "429" in (poll.health.last_error or "")
    assert poll.health.state is LinkState.UP


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    from plantsync.drivers.mespoll.source import _retry_after

    assert _retry_after("7") == 7.0
    assert _retry_after("99999999") == 3600.0
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("soon") is None
    assert isinstance(Throttled("x", 1.0), SourceUnavailable)


async def test_a_record_deleted_and_re_added_is_read_again_as_the_new_record(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    first = mes.add_workorder("WO-1001", "RUN")
    mes.add_workorder("WO-1002", "RUN")

    async with polled(store, endpoint(mes, "workorders")) as (poll, source):
        await poll.poll(source)
        mes.delete_and_readd("workorders", first["id"])
        assert await poll.poll(source) == 1
        assert await poll.poll(source) == 0

    orders = [m["payload"]["work_order_id"] for m in await outbox_messages(store)]
    assert orders == ["WO-1001", "WO-1002", "WO-1001"]


async def test_the_timestamp_cursor_is_the_mes_clock_so_a_skew_misses_nothing(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.faults.clock_skew = -3 * 3600.0  # the MES's clock is three hours behind this server's
    mes.add_downtime("press-1")

    async with polled(store, endpoint(mes, "downtime")) as (poll, source):
        await poll.poll(source)
        mes.add_downtime("press-2")
        await poll.poll(source)

    assert _downtime_ids(await outbox_messages(store)) == ["DT-1", "DT-2"]


async def test_a_record_that_does_not_map_is_dead_lettered_and_the_rest_go_on(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"
    mes.add_workorder("WO-1001", "RUN")
    mes.add_workorder("WO-1002", "PAUSED")  # no translation in values.state
    mes.add_workorder("WO-1003", "DONE")

    async with polled(store, endpoint(mes, "workorders")) as (poll, source):
        assert await poll.poll(source) == 2
        assert await poll.poll(source) == 0

    messages = await outbox_messages(store)
    states = [(m["payload"]["work_order_id"], m["payload"]["state"]) for m in messages]
    assert states == [("WO-1001", "Running"), ("WO-1003", "Ended")]
    ((topic, reason_code, reason, excerpt),) = await dead_letters(store)
    assert (topic, reason_code) == ("mes-poll:workorders", "schema-violation")
    assert "'PAUSED' is not in values.state" in reason
    assert b"WO-1002" in excerpt


async def test_an_unchanged_snapshot_is_answered_304_and_sends_nothing(
    mes: SimulatedMes, tmp_path: Path
) -> None:
    store = tmp_path / "store.db"

    async with polled(store, endpoint(mes, "capacity")) as (poll, source):
        assert await poll.poll(source) == 3
        assert await poll.poll(source) == 0
        assert poll.stats.not_modified == 1
        mes.close_shift()
        assert await poll.poll(source) == 3

    shifts = [m["payload"]["shift_id"] for m in await outbox_messages(store)]
    assert shifts == ["S1"] * 3 + ["S2"] * 3
    assert sum("capacity" in request for request in mes.requests) == 3

"""StreamConsumer: each message handled once, gaps and late arrivals reported."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantsync.contracts import Gap, StreamConsumer, Verdict


def message(seq: int, stream: str = "machine/press-1", site: str = "plant-01") -> dict[str, Any]:
    return {"id": f"{site}/{stream}/{seq}", "site": site, "stream": stream, "seq": seq}


def test_a_gapless_stream_is_new_message_by_message() -> None:
    consumer = StreamConsumer()
    assert [consumer.accept(message(seq)) for seq in (1, 2, 3)] == [Verdict.NEW] * 3
    assert consumer.last_seq("plant-01", "machine/press-1") == 3
    assert list(consumer.gaps) == []


def test_the_same_id_again_is_a_duplicate_whenever_it_comes() -> None:
    consumer = StreamConsumer()
    consumer.accept(message(1))
    consumer.accept(message(2))
    assert consumer.accept(message(1)) is Verdict.DUPLICATE
    assert consumer.accept(message(2)) is Verdict.DUPLICATE
    assert consumer.counts[Verdict.DUPLICATE] == 2


def test_a_skipped_seq_is_reported_once_as_a_gap_and_the_message_is_still_new() -> None:
    seen: list[Gap] = []
    consumer = StreamConsumer(on_gap=seen.append)
    consumer.accept(message(1))
    assert consumer.accept(message(5)) is Verdict.NEW
    assert consumer.accept(message(6)) is Verdict.NEW
    gap = Gap("plant-01", "machine/press-1", expected=2, received=5)
    assert seen == [gap]
    assert list(consumer.gaps) == [gap]
    assert gap.missing == 3


def test_a_late_message_after_a_gap_is_out_of_order_and_moves_nothing_back() -> None:
    consumer = StreamConsumer()
    for seq in (1, 4):
        consumer.accept(message(seq))
    assert consumer.accept(message(2)) is Verdict.OUT_OF_ORDER
    assert consumer.accept(message(2)) is Verdict.DUPLICATE
    assert consumer.accept(message(5)) is Verdict.NEW
    assert len(consumer.gaps) == 1


def test_streams_and_sites_are_counted_apart() -> None:
    consumer = StreamConsumer()
    verdicts = [
        consumer.accept(message(1, "order/JO-1")),
        consumer.accept(message(1, "order/JO-2")),
        consumer.accept(message(1, "order/JO-1", site="plant-02")),
        consumer.accept(message(2, "order/JO-1")),
    ]
    assert verdicts == [Verdict.NEW] * 4
    assert list(consumer.gaps) == []


def test_the_first_message_of_a_stream_sets_its_start_unless_positions_are_given() -> None:
    fresh = StreamConsumer()
    assert fresh.accept(message(40)) is Verdict.NEW
    assert list(fresh.gaps) == []
    resumed = StreamConsumer(positions={("plant-01", "machine/press-1"): 37})
    assert resumed.accept(message(40)) is Verdict.NEW
    assert list(resumed.gaps) == [Gap("plant-01", "machine/press-1", 38, 40)]
    assert resumed.positions() == {("plant-01", "machine/press-1"): 40}


def test_memory_is_bounded_least_recently_seen_forgotten_first() -> None:
    consumer = StreamConsumer(max_ids=2, max_streams=1, max_gaps=1)
    for seq in (1, 2, 3):
        consumer.accept(message(seq))
    # id 1 is forgotten; its seq is below the last, so it is not mistaken for a new message.
    assert consumer.accept(message(1)) is Verdict.OUT_OF_ORDER
    consumer.accept(message(1, "other"))
    assert consumer.last_seq("plant-01", "machine/press-1") is None
    for seq in (3, 5, 7):
        consumer.accept(message(seq, "other"))
    assert list(consumer.gaps) == [Gap("plant-01", "other", 6, 7)]


@pytest.mark.parametrize(
    "broken",
    [
        {"site": "plant-01", "stream": "s", "seq": 1},
        {"id": "", "site": "plant-01", "stream": "s", "seq": 1},
        {"id": "a", "stream": "s", "seq": 1},
        {"id": "a", "site": "plant-01", "seq": 1},
        {"id": "a", "site": "plant-01", "stream": "s", "seq": "1"},
        {"id": "a", "site": "plant-01", "stream": "s", "seq": True},
        {"id": "a", "site": "plant-01", "stream": "s", "seq": 0},
    ],
)
def test_a_message_without_id_site_stream_and_seq_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="the message has no"):
        StreamConsumer().accept(broken)


@given(
    lengths=st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=4),
    seed=st.randoms(use_true_random=False),
    duplicate_rate=st.floats(min_value=0, max_value=0.9),
)
def test_duplicates_interleaved_into_gapless_streams_leave_each_id_new_once_and_no_gap(
    lengths: list[int], seed: random.Random, duplicate_rate: float
) -> None:
    queues = [
        [message(seq, f"s{index}") for seq in range(1, n + 1)] for index, n in enumerate(lengths)
    ]
    delivered: list[dict[str, Any]] = []
    while any(queues):
        if delivered and seed.random() < duplicate_rate:
            delivered.append(dict(seed.choice(delivered)))  # a redelivery of anything sent
            continue
        queue = seed.choice([queue for queue in queues if queue])
        delivered.append(queue.pop(0))
    consumer = StreamConsumer()
    new = [m["id"] for m in delivered if consumer.accept(m) is Verdict.NEW]
    assert sorted(new) == sorted({m["id"] for m in delivered})
    assert len(new) == sum(lengths)
    assert list(consumer.gaps) == []
    assert consumer.counts[Verdict.OUT_OF_ORDER] == 0


def state(seq: int, historical: bool = False, stream: str = "machine/press-1") -> dict[str, Any]:
    """A machine.state message: the type the agent backfills after an outage."""
    return {**message(seq, stream), "type": "machine.state", "historical": historical}


def test_live_telemetry_running_ahead_of_its_backfill_is_no_gap_and_the_backfill_is_new() -> None:
    consumer = StreamConsumer()
    verdicts = [consumer.accept(state(seq)) for seq in (1, 2, 6, 7)]  # 3-5 are in the backlog
    assert consumer.holes() == [Gap("plant-01", "machine/press-1", expected=3, received=6)]
    verdicts += [consumer.accept(state(seq, historical=True)) for seq in (5, 3, 4)]
    assert verdicts == [Verdict.NEW] * 7
    assert list(consumer.gaps) == []
    assert consumer.holes() == []
    assert consumer.flush() == []
    assert consumer.last_seq("plant-01", "machine/press-1") == 7


def test_what_the_backfill_never_brings_is_a_gap_at_flush() -> None:
    seen: list[Gap] = []
    consumer = StreamConsumer(on_gap=seen.append)
    for seq in (1, 10):
        consumer.accept(state(seq))
    for seq in (7, 8, 9):  # newest first; 2-6 were cut off by age at the agent
        consumer.accept(state(seq, historical=True))
    assert seen == []
    assert consumer.flush() == [Gap("plant-01", "machine/press-1", expected=2, received=7)]
    assert seen == [Gap("plant-01", "machine/press-1", expected=2, received=7)]
    assert consumer.accept(state(4, historical=True)) is Verdict.OUT_OF_ORDER  # after the flush


def test_a_jump_on_a_business_stream_is_a_gap_at_once() -> None:
    consumer = StreamConsumer()
    for seq in (1, 4):
        consumer.accept({**message(seq, "order/JO-1"), "type": "production.confirmation"})
    assert list(consumer.gaps) == [Gap("plant-01", "order/JO-1", expected=2, received=4)]
    assert consumer.holes() == []


def test_open_holes_are_bounded_the_oldest_reported_as_a_gap_first() -> None:
    consumer = StreamConsumer(max_holes=2)
    for seq in (1, 3, 5, 7):
        consumer.accept(state(seq))
    assert list(consumer.gaps) == [Gap("plant-01", "machine/press-1", expected=2, received=3)]
    assert [hole.expected for hole in consumer.holes()] == [4, 6]

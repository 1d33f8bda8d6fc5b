"""Dead letters: bad input is kept with its reason, answered with a rejection, and retryable."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane, Record
from plantsync.buffer.inbox import DeadLetter, InboxStatus
from plantsync.buffer.retention import RetentionPolicy
from plantsync.buffer.store import Store
from plantsync.errors import StoreFull
from tests.buffer.harness import ROOMY, make_record

TOPIC = "plant/p1/down/schedule"
NOW = 5000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(
        tmp_path / "store.sqlite3", max_size_bytes=ROOMY, clock=lambda: NOW
    ) as store:
        yield store


def rejection(number: int) -> Record:
    return make_record(number, Lane.BUSINESS, stream="acks")


async def dead_letter(
    store: Store, number: int, *, message_id: str | None = None, acks: tuple[Record, ...] = ()
) -> int:
    return await store.inbox.dead_letter(
        TOPIC,
        b"{not json",
        "malformed",
        f"bad JSON #{number}",
        received_at=1000.0 + number,
        message_id=message_id,
        acks=acks,
    )


async def test_dead_letter_is_stored_with_its_reason_and_rejection_ack(store: Store) -> None:
    dead_letter_id = await dead_letter(store, 1, message_id="d1", acks=(rejection(1),))

    assert await store.inbox.dead_letters() == [
        DeadLetter(
            id=dead_letter_id,
            message_id="d1",
            topic=TOPIC,
            payload=b"{not json",
            reason_code="malformed",
            reason="bad JSON #1",
            received_at=1001.0,
            dead_at=NOW,
            size=len(b"{not json"),
            sha256=hashlib.sha256(b"{not json").hexdigest(),
        )
    ]
    assert [item.record for item in await store.outbox.begin(10)] == [rejection(1)]
    assert await store.inbox.dead_letter_count() == 1


async def test_a_dead_letter_whose_ack_does_not_fit_is_not_stored(tmp_path: Path) -> None:
    cap = rejection(0).size
    async with await Store.open(tmp_path / "s.sqlite3", max_size_bytes=cap) as store:
        await store.outbox.add([rejection(1)])

        with pytest.raises(StoreFull):
            await dead_letter(store, 2, acks=(rejection(2),))

        assert await store.inbox.dead_letter_count() == 0


async def test_dead_letters_are_listed_newest_first_up_to_the_limit(store: Store) -> None:
    for number in (1, 2, 3):
        await dead_letter(store, number)

    listed = await store.inbox.dead_letters(limit=2)

    assert [letter.reason for letter in listed] == ["bad JSON #3", "bad JSON #2"]


async def test_a_discarded_dead_letter_is_gone(store: Store) -> None:
    dead_letter_id = await dead_letter(store, 1)

    assert await store.inbox.discard_dead_letter(dead_letter_id)
    assert not await store.inbox.discard_dead_letter(dead_letter_id)
    assert await store.inbox.dead_letter_count() == 0


async def test_retry_of_a_dead_letter_returns_it_to_the_inbox(store: Store) -> None:
    dead_letter_id = await dead_letter(store, 1, message_id="d1")

    row = await store.inbox.retry_dead_letter(dead_letter_id)

    assert row is not None
    assert (row.message_id, row.payload, row.received_at) == ("d1", b"{not json", 1001.0)
    assert (row.status, row.attempts, row.updated_at) == (InboxStatus.RECEIVED, 0, NOW)
    assert await store.inbox.pending(10) == [row]
    assert await store.inbox.dead_letter_count() == 0


async def test_a_retried_dead_letter_is_then_deduplicated_like_any_message(store: Store) -> None:
    await store.inbox.retry_dead_letter(await dead_letter(store, 1, message_id="d1"))

    accepted = await store.inbox.receive("d1", TOPIC, b"{}", received_at=1.0, seq=None)

    assert not accepted


async def test_retry_of_a_dead_letter_whose_id_was_received_leaves_it(store: Store) -> None:
    await store.inbox.receive("d1", TOPIC, b"{}", received_at=1.0, seq=None)
    dead_letter_id = await dead_letter(store, 1, message_id="d1")

    assert await store.inbox.retry_dead_letter(dead_letter_id) is None
    assert await store.inbox.dead_letter_count() == 1
    assert len(await store.inbox.pending(10)) == 1


async def test_a_dead_letter_without_a_message_id_is_retried_under_its_own_id(
    store: Store,
) -> None:
    dead_letter_id = await dead_letter(store, 1)

    row = await store.inbox.retry_dead_letter(dead_letter_id)

    assert row is not None
    assert row.message_id == f"dead-letter/{dead_letter_id}"


async def test_retry_of_an_unknown_dead_letter_returns_none(store: Store) -> None:
    assert await store.inbox.retry_dead_letter(42) is None


# ---- bounded: a prefix, the whole's size and hash, counted toward the cap ------------------


async def test_a_dead_letter_keeps_a_prefix_and_the_whole_messages_size_and_hash(
    tmp_path: Path,
) -> None:
    payload = b"x" * 10_000
    async with await Store.open(
        tmp_path / "s.sqlite3", max_size_bytes=ROOMY, dead_letter_max_bytes=1024
    ) as store:
        await store.inbox.dead_letter(
            TOPIC, payload, "oversized", "big", received_at=1.0, message_id=None
        )
        (letter,) = await store.inbox.dead_letters()

    assert letter.payload == payload[:1024]
    assert (letter.size, letter.sha256) == (10_000, hashlib.sha256(payload).hexdigest())
    assert not letter.whole


async def test_dead_letters_count_toward_the_cap_and_evict_telemetry(tmp_path: Path) -> None:
    telemetry = make_record(1, payload_size=3000)
    cap = telemetry.size + 500
    path = tmp_path / "s.sqlite3"
    # Dead letters may take the whole cap here (their share: tests/buffer/test_room.py).
    async with await Store.open(
        path, max_size_bytes=cap, dead_letter_cap=cap, dead_letter_max_bytes=1024
    ) as store:
        await store.outbox.add([telemetry])
        await store.inbox.dead_letter(
            TOPIC, b"y" * 5000, "oversized", "big", received_at=1.0, message_id=None
        )
        stats = await store.outbox.stats()
    async with await Store.open(path, max_size_bytes=cap, dead_letter_cap=cap) as reopened:
        again = await reopened.outbox.stats()

    held = 1024 + len(TOPIC) + len("big") + 64
    assert stats.dead_letter_bytes == again.dead_letter_bytes == held
    assert stats.size_bytes == again.size_bytes == held  # the telemetry row was evicted for it
    assert stats.evicted_total == 1


async def test_a_discarded_or_pruned_dead_letter_no_longer_counts(store: Store) -> None:
    first = await dead_letter(store, 1)
    await dead_letter(store, 2)
    counted = (await store.outbox.stats()).dead_letter_bytes

    await store.inbox.discard_dead_letter(first)
    after_discard = (await store.outbox.stats()).dead_letter_bytes
    await store.prune(RetentionPolicy(keep_dead_letters_seconds=0), NOW + 1)
    after_prune = (await store.outbox.stats()).dead_letter_bytes

    assert counted > after_discard > 0
    assert after_prune == 0

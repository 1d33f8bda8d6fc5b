"""Room at the store's cap (``buffer/room/held.py``): idempotency keys count toward it as what
they take on disk; dead letters hold at most their share, the oldest evicted first, counted
and logged; business messages are never evicted, and never refused for a dead letter's sake."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from plantsync.buffer.base import Lane, Record
from plantsync.buffer.idempotency import KeyedRequest
from plantsync.buffer.retention import RetentionPolicy
from plantsync.buffer.store import Store
from plantsync.errors import StoreFull
from tests.api.support import AUTH, attached, client, config, confirmation
from tests.buffer.harness import make_record

TOPIC = "plant/p1/down/schedule"
KEYS = 300


async def test_a_key_row_counts_what_it_takes_on_disk(tmp_path: Path) -> None:
    """The count of a key is what its row and its two index entries take in SQLite's pages."""
    path = tmp_path / "store.db"
    async with attached(config(path)) as agent, client(agent) as api:
        for number in range(KEYS):
            body = confirmation(f"JO-{number}", confirmation_id=f"JO-{number}-c1")
            assert (await api.post("/api/v1/confirmations", headers=AUTH, json=body)).is_success
        assert agent.store is not None
        counted = (await agent.store.outbox.stats()).key_bytes
    with sqlite3.connect(path) as connection:
        names = ("idempotency_keys", "idempotency_keys_age", "sqlite_autoindex_idempotency_keys_1")
        marks = ", ".join("?" for _ in names)
        ((pages, payload),) = connection.execute(
            f"SELECT SUM(pgsize), SUM(payload) FROM dbstat WHERE name IN ({marks})",  # noqa: S608
            names,
        ).fetchall()
    per_key, on_disk, stored = counted / KEYS, pages / KEYS, payload / KEYS
    print(
        f"\none key row: counted {per_key:.0f} B; on disk {on_disk:.0f} B, payload {stored:.0f} B"
    )
    assert stored <= per_key <= on_disk * 1.1


async def test_keys_count_toward_the_cap_and_a_key_that_does_not_fit_is_not_kept(
    tmp_path: Path,
) -> None:
    business = make_record(1, Lane.BUSINESS, payload_size=300)
    path = tmp_path / "store.db"
    async with await Store.open(path, max_size_bytes=3 * business.size + 600) as store:
        await store.keys.add_once(_request("k1"), lambda: business)
        first = await store.outbox.stats()
        await store.keys.add_once(
            _request("k2"), lambda: make_record(2, Lane.BUSINESS, payload_size=300)
        )
        with pytest.raises(StoreFull):  # two messages and two keys fill it: the third does not fit
            await store.keys.add_once(
                _request("k3"), lambda: make_record(3, Lane.BUSINESS, payload_size=300)
            )
        full = await store.outbox.stats()
        assert await store.keys.find("api:confirmation", "k3") is None
    async with await Store.open(path, max_size_bytes=1 << 20) as reopened:
        again = await reopened.outbox.stats()
        await reopened.prune(RetentionPolicy(keep_idempotency_keys_seconds=0), now=1e12)
        pruned = await reopened.outbox.stats()

    assert first.key_bytes > len(_request("k1").request)
    assert first.size_bytes == business.size + first.key_bytes
    assert full.key_bytes == again.key_bytes == 2 * first.key_bytes
    assert pruned.key_bytes == 0


async def test_a_flood_of_dead_letters_keeps_to_its_share_and_refuses_no_business(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 40_000
    async with await Store.open(
        tmp_path / "store.db", max_size_bytes=cap, dead_letter_max_bytes=1024
    ) as store:
        telemetry = [make_record(n, payload_size=1000) for n in range(1, 11)]
        await store.outbox.add(telemetry)
        with caplog.at_level(logging.WARNING, logger="plantsync.buffer.room.held"):
            ids = [await _dead_letter(store, n) for n in range(200)]
        stats = await store.outbox.stats()
        kept = await store.inbox.dead_letters(limit=1000)
        confirmations = [make_record(100 + n, Lane.BUSINESS, payload_size=1000) for n in range(25)]
        await store.outbox.add(confirmations)  # room enough once telemetry is evicted

    assert stats.dead_letter_cap == cap // 10
    assert 0 < stats.dead_letter_bytes <= stats.dead_letter_cap
    assert stats.dead_letters_evicted == 200 - len(kept)
    assert [letter.id for letter in kept] == ids[-len(kept) :][::-1]  # newest kept
    assert stats.evicted_total == 0  # the flood evicted no telemetry
    evictions = [r.getMessage() for r in caplog.records if "evicted" in r.getMessage()]
    assert evictions
    assert "to make room for a newer dead letter" in evictions[0]
    assert "malformed" in evictions[0]


async def test_a_business_message_takes_the_room_of_the_oldest_dead_letters_before_a_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 20_000
    async with await Store.open(
        tmp_path / "store.db", max_size_bytes=cap, dead_letter_max_bytes=1024, dead_letter_cap=cap
    ) as store:
        ids = [await _dead_letter(store, n) for n in range(3)]
        before = await store.outbox.stats()
        business = [make_record(n, Lane.BUSINESS, payload_size=1000) for n in range(1, 100)]
        with caplog.at_level(logging.WARNING, logger="plantsync.buffer.room.held"):
            added = await _add_until_full(store, business)
        after = await store.outbox.stats()
        left = await store.inbox.dead_letters()

    assert before.dead_letter_bytes > 0
    assert (after.dead_letter_bytes, left, after.dead_letters_evicted) == (0, [], len(ids))
    assert added * business[0].size <= cap < (added + 1) * business[0].size
    assert after.lanes[Lane.BUSINESS].depth == added  # no business message was evicted
    assert any("to make room for a business message" in r.getMessage() for r in caplog.records)


async def _add_until_full(store: Store, records: list[Record]) -> int:
    """Add ``records`` one by one until the store refuses one; how many it took."""
    for added, record in enumerate(records):
        try:
            await store.outbox.add([record])
        except StoreFull:
            return added
    raise AssertionError("the store took every record")


def _request(key: str) -> KeyedRequest:
    return KeyedRequest("api:confirmation", key, b'{"confirmation_id": "' + key.encode() + b'"}')


async def _dead_letter(store: Store, number: int) -> int:
    reason = f"bad JSON #{number}"
    return await store.inbox.dead_letter(
        TOPIC, b"{" * 1500, "malformed", reason, received_at=float(number), message_id=None
    )

"""Retention of the last-known-good schedule and the polled endpoints' cursors: an order closed
(cancelled by HQ; ended, aborted or finally confirmed at the plant) leaves the ``orders`` table
after ``keep_closed_orders``, unless a pending message still names it or HQ opened it again;
a cursor of an endpoint no longer configured goes after ``keep_poll_cursors``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plantsync.buffer.inbox import InboxStatus, OrderState
from plantsync.buffer.polling import CursorState
from plantsync.buffer.retention import RetentionPolicy
from plantsync.buffer.store import Store
from tests.buffer.harness import ROOMY

DAY = 24 * 3600.0
CLOSED_AT = 1_800_000_000.0
KEEP = RetentionPolicy(keep_closed_orders_seconds=30 * DAY, keep_poll_cursors_seconds=30 * DAY)
TOPIC = "plant/p1/down/schedule"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(
        tmp_path / "store.db", max_size_bytes=ROOMY, clock=lambda: CLOSED_AT
    ) as store:
        yield store


async def _apply(store: Store, order_id: str, status: str = "Released", revision: int = 1) -> None:
    message_id = f"{order_id}-r{revision}-{status}"
    await store.inbox.receive(message_id, TOPIC, b"{}", received_at=CLOSED_AT, seq=None)
    [row] = [row for row in await store.inbox.pending(100) if row.message_id == message_id]
    order = OrderState(
        order_id, revision, "wc-1", status, json.dumps({"r": revision}).encode(), CLOSED_AT
    )
    await store.inbox.settle(row.row_id, InboxStatus.APPLIED, orders=[order])


async def _schedule(store: Store) -> list[str]:
    return [order.order_id for order in await store.inbox.schedule()]


async def test_closed_orders_leave_the_schedule_after_their_window_and_open_ones_stay(
    store: Store,
) -> None:
    await _apply(store, "JO-open")
    await _apply(store, "JO-cancelled", "Cancelled")
    await _apply(store, "JO-ended")
    await store.close_order("JO-ended", CLOSED_AT)
    await _apply(store, "JO-reopened")
    await store.close_order("JO-reopened", CLOSED_AT)
    await _apply(store, "JO-reopened", revision=2)  # HQ sent a new revision: open again
    await _apply(store, "JO-named")
    await store.close_order("JO-named", CLOSED_AT)
    await store.inbox.receive(
        "pending-1", TOPIC, b"{}", received_at=CLOSED_AT, seq=None, order_ids=["JO-named"]
    )

    within = await store.prune(KEEP, CLOSED_AT + 29 * DAY)
    kept = await _schedule(store)
    after = await store.prune(KEEP, CLOSED_AT + 31 * DAY)

    assert within.orders == 0
    assert sorted(kept) == ["JO-cancelled", "JO-ended", "JO-named", "JO-open", "JO-reopened"]
    assert after.orders == 2
    assert after.removed()["orders"] == 2
    assert sorted(await _schedule(store)) == ["JO-named", "JO-open", "JO-reopened"]


async def test_a_second_closing_does_not_move_the_first(store: Store) -> None:
    await _apply(store, "JO-1")
    await store.close_order("JO-1", CLOSED_AT)
    await store.close_order("JO-1", CLOSED_AT + 20 * DAY)  # a retried final confirmation

    report = await store.prune(KEEP, CLOSED_AT + 31 * DAY)

    assert (report.orders, await _schedule(store)) == (1, [])


async def test_cursors_of_endpoints_no_longer_configured_are_forgotten_after_their_window(
    store: Store,
) -> None:
    for endpoint in ("mes-poll:orders", "mes-poll:removed", "mes-poll:readded"):
        await store.cursors.commit(endpoint, CursorState(cursor="42"), [], CLOSED_AT)
    configured = frozenset({"mes-poll:orders"})
    policy = RetentionPolicy(keep_poll_cursors_seconds=30 * DAY, polled_endpoints=configured)

    unknown = await store.prune(KEEP, CLOSED_AT + 31 * DAY)  # no endpoint list: none pruned
    within = await store.prune(policy, CLOSED_AT + 29 * DAY)
    after = await store.prune(policy, CLOSED_AT + 31 * DAY)

    assert (unknown.poll_cursors, within.poll_cursors, after.poll_cursors) == (0, 0, 2)
    assert await store.cursors.get("mes-poll:orders") == CursorState(cursor="42")
    assert await store.cursors.get("mes-poll:removed") is None

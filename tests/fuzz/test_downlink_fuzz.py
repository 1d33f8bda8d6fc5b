"""Bad input on the down topic, in process: the parser names each kind of bad input, and the
downlink over a real SQLite store dead-letters it, answers it with a rejection, and still
applies the good message that follows, each step within a deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantsync.agent.downlink import Downlink
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.store import Store
from plantsync.contracts import Topics, new_message_id, parse_down_message
from plantsync.drivers.localschedule import LocalScheduleSink
from plantsync.errors import MessageRejected
from tests.fuzz.inbound import (
    ANY_INPUT,
    BAD_INPUT,
    FUZZ,
    MAX_MESSAGE_BYTES,
    RECEIVE_DEADLINE,
    SITE,
    AckSeen,
    DeadLetterSeen,
    Inbound,
    acks_from,
    check_outcomes,
    fingerprint,
    good_release,
)

TOPICS = Topics("plantsync/v1", SITE)
GOOD_ORDER = "FZ-GOOD-1"
SETTLE_DEADLINE = 10.0
"""Seconds the downlink may take to decide every row of one example."""


@FUZZ
@given(BAD_INPUT)
def test_the_parser_rejects_each_kind_of_bad_input_naming_the_reason_and_the_message(
    inbound: Inbound,
) -> None:
    with pytest.raises(MessageRejected) as caught:
        parse_down_message(inbound.payload, site=SITE, max_bytes=MAX_MESSAGE_BYTES)

    rejected = caught.value
    if inbound.reasons:
        assert rejected.reason_code in inbound.reasons, inbound.kind
    assert (rejected.message_id or fingerprint(inbound.payload)) == inbound.original_id
    assert rejected.detail
    assert "\n" not in rejected.detail


@FUZZ
@given(st.lists(ANY_INPUT, min_size=1, max_size=6))
def test_any_inbound_sequence_is_dead_lettered_or_accepted_and_the_next_good_one_applies(
    sent: list[Inbound],
) -> None:
    good = good_release(new_message_id(), GOOD_ORDER)

    letters, acks, applied_revision = asyncio.run(_through_the_downlink([*sent, good]))

    check_outcomes([*sent, good], letters, acks)
    assert any(a.original_id == good.original_id and a.outcome == "applied" for a in acks)
    assert applied_revision == 1, "the good message reached the last-known-good schedule"


async def _through_the_downlink(
    sent: list[Inbound],
) -> tuple[list[DeadLetterSeen], list[AckSeen], int | None]:
    with tempfile.TemporaryDirectory() as scratch:
        store = await Store.open(Path(scratch) / "store.db", max_size_bytes=1 << 24)
        try:
            downlink = Downlink(
                store,
                TOPICS,
                Sequencer(await store.outbox.last_sequences()),
                policy=SchedulePolicy(timedelta(hours=4), Decimal(10)),
                outbox_changed=asyncio.Event(),
                max_message_bytes=MAX_MESSAGE_BYTES,
            )
            for inbound in sent:
                async with asyncio.timeout(RECEIVE_DEADLINE):
                    await downlink.receive(TOPICS.down_schedule, inbound.payload)
            await _settle(downlink, store)
            letters = [
                DeadLetterSeen(letter.payload, letter.reason_code, letter.reason)
                for letter in await store.inbox.dead_letters(1000)
            ]
            acks = acks_from(await _outbox_messages(store))
            order = await store.inbox.order(GOOD_ORDER)
            return letters, acks, order.revision if order else None
        finally:
            await store.close()


async def _settle(downlink: Downlink, store: Store) -> None:
    """Run the downlink until nothing is pending; an exception inside it fails the test."""
    runner = asyncio.create_task(downlink.run(LocalScheduleSink(), LinkHealth("plant")))
    try:
        async with asyncio.timeout(SETTLE_DEADLINE):
            while (await store.inbox.inbox_stats()).pending:
                assert not runner.done(), "the downlink stopped"
                await asyncio.sleep(0.005)
    finally:
        if runner.done():
            runner.result()  # raises what ended it
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def _outbox_messages(store: Store) -> list[dict[str, Any]]:
    claimed = await store.outbox.begin(10_000)
    return [json.loads(row.record.payload) for row in claimed]

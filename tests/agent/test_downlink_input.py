"""No inbound payload crashes the downlink: every one ends in the inbox or the dead letters,
and every one is answered with an acknowledgement."""

from __future__ import annotations

import asyncio
import json
import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plantsync.agent.downlink import Downlink
from plantsync.agent.policy import SchedulePolicy
from plantsync.agent.sequencer import Sequencer
from plantsync.agent.supervisor import LinkHealth
from plantsync.buffer.store import Store
from plantsync.contracts import Topics
from plantsync.drivers.localschedule import LocalScheduleSink
from tests.contracts.examples import SITE, down_message

TOPICS = Topics("plantsync/v1", SITE)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A valid down message with one top-level or payload key replaced or removed."""
    message: dict[str, Any] = down_message(
        draw(st.sampled_from(["schedule.release", "order.cancel", "order.hold"]))
    )
    target = message if draw(st.booleans()) else message["payload"]
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(json_values)
    return json.dumps(message).encode()


payloads = st.one_of(
    st.binary(max_size=300), mutated_messages(), json_values.map(lambda v: json.dumps(v).encode())
)


async def _receive_and_apply(store_path: Path, payload: bytes) -> tuple[int, int, int]:
    store = await Store.open(store_path, max_size_bytes=1 << 24)
    try:
        downlink = Downlink(
            store,
            TOPICS,
            Sequencer(await store.outbox.last_sequences()),
            policy=SchedulePolicy(timedelta(hours=4), Decimal(10)),
            outbox_changed=asyncio.Event(),
        )
        await downlink.receive(f"plantsync/v1/{SITE}/down/schedule", payload)
        runner = asyncio.create_task(downlink.run(LocalScheduleSink(), LinkHealth("plant")))
        async with asyncio.timeout(5):
            while (await store.inbox.inbox_stats()).pending:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.005)
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        stats = await store.inbox.inbox_stats()
        acks = (await store.outbox.stats()).depth
        return stats.pending, await store.inbox.dead_letter_count(), acks
    finally:
        await store.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads)
def test_any_payload_is_kept_and_answered_without_crashing_the_downlink(payload: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        pending, dead_letters, acks = asyncio.run(
            _receive_and_apply(Path(scratch) / "s.db", payload)
        )
    assert pending == 0, "nothing is left unprocessed"
    assert acks >= 1, "HQ hears about it"
    if dead_letters == 0:
        assert acks >= 2, "an accepted message is acknowledged as accepted and then decided"

"""Bad input end to end: HQ publishes fuzzed payloads to a real Mosquitto, the running agent
dead-letters each bad one and answers it with a rejection on the hub, and still applies the
good schedule that follows. A handful of examples: each starts an agent."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ByteSize

from plantsync.config.model import (
    AgentConfig,
    ApiConfig,
    HubConfig,
    PolicyConfig,
    ScheduleConfig,
    SiteConfig,
    StoreConfig,
)
from plantsync.contracts import Topics, new_message_id
from plantsync.drivers.mqtt import HubConnection
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import FAST_RECONNECT, HubRecorder, eventually, recording, running_agent
from tests.fuzz.inbound import (
    ANY_INPUT,
    FUZZ,
    MAX_MESSAGE_BYTES,
    SITE,
    AckSeen,
    DeadLetterSeen,
    Inbound,
    acks_from,
    check_outcomes,
    good_release,
)

pytestmark = pytest.mark.slow

TOPICS = Topics("plantsync/v1", SITE)
EXAMPLE_DEADLINE = 60.0
"""Seconds one example may take: start the agent, publish, wait for every ack, stop."""
_runs = itertools.count(1)


@settings(
    FUZZ,
    max_examples=10,
    suppress_health_check=[*FUZZ.suppress_health_check, HealthCheck.function_scoped_fixture],
)
@given(st.lists(ANY_INPUT, min_size=4, max_size=10))
def test_fuzzed_payloads_through_mosquitto_are_dead_lettered_answered_and_the_agent_applies_on(
    broker: Mosquitto, sent: list[Inbound]
) -> None:
    good = good_release(new_message_id(), "FZ-GOOD-1")

    letters, acks = asyncio.run(_through_the_agent(broker.url, [*sent, good], next(_runs)))

    check_outcomes([*sent, good], letters, acks)
    assert any(a.original_id == good.original_id and a.outcome == "applied" for a in acks)


async def _through_the_agent(
    broker_url: str, sent: list[Inbound], run: int
) -> tuple[list[DeadLetterSeen], list[AckSeen]]:
    """A fresh agent (store, session) per example, so examples do not see each other's acks."""
    async with asyncio.timeout(EXAMPLE_DEADLINE):
        with tempfile.TemporaryDirectory() as scratch:
            config = _config(Path(scratch) / "store.db", broker_url, run)
            hq = recording(broker_url, client_id=f"hq-fuzz-{run}")
            async with hq as hub, running_agent(config) as agent:
                await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
                await _publish(broker_url, sent)
                # One ack at least per message, and the good one's "applied" after them all.
                await hub.wait_for(lambda: _answered(hub, sent), within=30)
                assert agent.store is not None
                letters = [
                    DeadLetterSeen(letter.payload, letter.reason_code, letter.reason)
                    for letter in await agent.store.inbox.dead_letters(1000)
                ]
            return letters, acks_from(_unique(hub))


def _config(store: Path, broker_url: str, run: int) -> AgentConfig:
    """No OPC UA source; schedules go to the agent's own last-known-good schedule."""
    return AgentConfig(
        site=SiteConfig(id=SITE),
        hub=HubConfig(
            url=broker_url, keepalive=timedelta(seconds=5), client_id=f"plantsync-fuzz-{run}"
        ),
        store=StoreConfig(path=store),
        api=ApiConfig(port=0),
        policy=PolicyConfig(snapshot_interval=timedelta(0)),
        schedule=ScheduleConfig(max_message_size=ByteSize(MAX_MESSAGE_BYTES)),
        reconnect=FAST_RECONNECT,
        shutdown_timeout=timedelta(seconds=5),
    )


async def _publish(broker_url: str, sent: list[Inbound]) -> None:
    """HQ's side: every payload on the down topic, QoS 1, in order, on one connection."""
    hub = HubConfig(url=broker_url)
    async with HubConnection(hub, client_id="hq-fuzz-publisher", clean_start=True) as link:
        for inbound in sent:
            await link.publish(TOPICS.down_schedule, inbound.payload, qos=1)


def _answered(hub: HubRecorder, sent: list[Inbound]) -> bool:
    acks = acks_from(_unique(hub))
    applied = any(a.original_id == sent[-1].original_id and a.outcome == "applied" for a in acks)
    return applied and len(acks) >= len(sent) + 1


def _unique(hub: HubRecorder) -> list[dict[str, object]]:
    """The business messages once each: QoS 1 may deliver one twice."""
    seen: dict[object, dict[str, object]] = {}
    for message in hub.business:
        seen.setdefault(message["id"], message)
    return list(seen.values())

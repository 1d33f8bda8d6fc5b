"""Links reconnect sooner than their backoff when nudged: a renewal (SIGHUP, a changed
certificate or key file) ends every session and connects again at once without counting a
failure; a wake (the routing table changed) cuts a backoff's sleep short."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.agent.recovery import nudge as nudging
from plantsync.agent.recovery.nudge import Nudge, watch
from plantsync.agent.supervisor import Backoff, LinkHealth, LinkState, supervise
from plantsync.errors import SourceUnavailable
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import agent_config, eventually, gapless, recording, running_agent

WAIT = 10.0


class _Longest(random.Random):
    """Full jitter that always draws the longest delay: only a wake can make a retry early."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Sessions:
    """A link whose sessions come up and serve until cancelled; ``fail`` makes them fail."""

    def __init__(self) -> None:
        self.started = 0
        self.fail = False

    async def __call__(self, up: Callable[[], None]) -> None:
        self.started += 1
        if self.fail:
            raise SourceUnavailable("peer away")
        up()
        await asyncio.Event().wait()


async def test_a_renewal_reconnects_a_session_at_once_without_a_failure() -> None:
    nudge, sessions, health = Nudge(), Sessions(), LinkHealth("plant")
    backoff = Backoff(initial=60, maximum=60)
    link = asyncio.create_task(supervise(health, sessions, backoff, nudge))
    try:
        await eventually(lambda: health.state is LinkState.UP, WAIT)
        nudge.renew("test")
        await eventually(lambda: sessions.started == 2 and health.state is LinkState.UP, WAIT)
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
    assert (health.connects, health.failures) == (2, 0)


async def test_a_wake_cuts_the_backoff_short() -> None:
    nudge, sessions, health = Nudge(), Sessions(), LinkHealth("plant")
    sessions.fail = True
    backoff = Backoff(60, 60, rng=_Longest())
    link = asyncio.create_task(supervise(health, sessions, backoff, nudge))
    try:
        await eventually(lambda: health.state is LinkState.BACKOFF, WAIT)
        sessions.fail = False
        nudge.wake("the network is back")  # without it, the next try is up to 60 s away
        await eventually(lambda: health.state is LinkState.UP, WAIT)
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
    assert sessions.started == 2


ROUTES = "Iface Destination Gateway Flags RefCnt Use Metric Mask\n"


async def test_a_changed_file_renews_and_a_changed_route_wakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificate, route = tmp_path / "client.crt", tmp_path / "route"
    certificate.write_text("one")
    route.write_text(ROUTES + "eth0 0 1 3 0 0 0 0\n")
    monkeypatch.setattr(nudging, "ROUTE_FILES", (route,))
    monkeypatch.setitem(nudging._ROUTE_COLUMNS, "route", (0, 1, 2, 3, 6, 7))
    monkeypatch.setattr(nudging, "WATCH_SECONDS", 0.05)
    nudge = Nudge()
    woken = asyncio.ensure_future(nudge.sleep(WAIT))
    watcher = asyncio.create_task(watch(nudge, lambda: [certificate]))
    try:
        await asyncio.sleep(0.2)
        # a counter moving with traffic (Use) is no change of route
        route.write_text(ROUTES + "eth0 0 1 3 0 9 0 0\n")
        await asyncio.sleep(0.2)
        assert not woken.done()
        route.write_text(ROUTES + "wg0 0 1 3 0 9 0 0\n")
        async with asyncio.timeout(WAIT):
            await woken
        assert nudge.renewals == 0
        certificate.write_text("renewed")
        await eventually(lambda: nudge.renewals == 1, WAIT)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def test_a_renewal_reconnects_the_hub_and_loses_nothing(
    broker: Mosquitto, opcua_plant: SimulatedPlant, tmp_path: Path
) -> None:
    """The hub reconnects (where a changed certificate would be read again) while readings
    flow; every stream stays gapless and nothing waits in the outbox afterwards."""
    server = opcua_plant.server_config("line-1", stall_timeout=timedelta(seconds=3))
    config = agent_config(tmp_path / "store.db", broker.url, server)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        await hub.wait_for(lambda: len(hub.streams()) > 0, within=30)
        agent.nudge.renew("test")
        await eventually(lambda: agent.health["hub"].connects >= 2, within=20)
        await opcua_plant.set_value("press-1", "speed", 4242.0)
        await hub.wait_for(lambda: 4242.0 in hub.values("press-1", "speed"), within=30)
        failures = agent.health["hub"].failures
    assert failures == 0
    assert all(gapless(sequences) for sequences in hub.streams().values())

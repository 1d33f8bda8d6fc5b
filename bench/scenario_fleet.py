"""Scenario fleet: many plants against one hub broker, when the hub goes away and comes back.

    python -m bench.run --scenario fleet [--quick]          (make fleet; FLEET_AGENTS=20,
                                                             FLEET_OUTAGE_SECONDS=60)

    bench.opcua_source ──OPC UA──▶ 20 x ``plantsync run`` ──MQTT──▶ Mosquitto ──▶ HQ (fleet_hq)
    (one server, 4 machines x 2     (own process, store,                      de-duplicates,
     tags per agent, 400 changes/s)   site id, local API)                      answers resyncs

Steady state first (messages/s through the hub, broker CPU). Then:

A. **The hub goes down** for FLEET_OUTAGE_SECONDS (SIGTERM: Mosquitto saves its sessions) and
   comes back. HQ releases one order to every site during the outage (its client sends it once
   the broker is back). Per agent: the reconnect time (first live "online" status at HQ after the
   broker listens again), spread by the agents' full-jitter backoff; the time to its all-clear
   (reconnected, nothing queued from before the broker came back, the outage's order applied).
B. **The broker restarts without its sessions** (no persistence). The agents are paused
   (SIGSTOP) for the restart, so HQ's own subscription is back before any agent (otherwise what
   an agent sends before HQ resubscribes is lost to HQ: the broker kept no session for it); HQ
   releases one order to every site, which the broker drops (no session subscribes to it). Then
   the agents resume: each finds no session, asks for a resync, HQ answers every request with a
   snapshot, and the lost order must be applied from it, once. Resync requests counted.

Then the plant goes quiet, every outbox empties, and HQ's seqs per (site, stream) are compared
with what each agent's store numbered: lost = seqs never received; applied twice = a change
that took effect twice at a site's MES (chaos.mes records every one), and never applied = an
order HQ released that took effect at no MES. Broker CPU is read from /proc/<pid>/stat.

Last, what the same broker holds beyond the fleet (``fleet_hold``): FLEET_IDLE_SESSIONS idle
persistent sessions (default 5,000) connected in parallel, and raw paho QoS 1 into it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import free_ports
from bench.fleet_hold import Held, hold_sessions, ingest_ceiling
from bench.fleet_hq import Hq, histogram
from bench.fleet_parts import Fleet, FleetBroker, Member, PlantSource, fleet_members
from bench.report import Figure

SCENARIO = "fleet"
RATE = 400.0
"""OPC UA changes/s over the whole fleet (20 agents: 20/s each, over 4 machines)."""
STEADY_SECONDS = 20.0
CLEAR_WITHIN = 150.0
POLL = 0.5


def run(quick: bool) -> list[Figure]:
    agents = int(os.environ.get("FLEET_AGENTS", "5" if quick else "20"))
    outage = float(os.environ.get("FLEET_OUTAGE_SECONDS", "10" if quick else "60"))
    return asyncio.run(_run(agents, outage))


@dataclass
class Recovery:
    """One recovery: seconds after the broker listened again, per site."""

    name: str
    reconnect: dict[str, float] = field(default_factory=dict)
    clear: dict[str, float] = field(default_factory=dict)
    broker_cpu: float = 0.0
    """Broker CPU seconds from its start to the all-clear."""
    peak_rate: int = 0
    received: int = 0
    resyncs: dict[str, int] = field(default_factory=dict)

    @property
    def all_clear(self) -> float | None:
        return max(self.clear.values()) if self.clear else None


async def _run(agents: int, outage: float) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as scratch:
        root = Path(scratch)
        broker_port, source_port = free_ports(2)
        broker = FleetBroker(root / "broker", port=broker_port, max_queued_messages=0)
        broker.start()
        source = PlantSource(source_port, agents)
        hq = Hq(broker_port)
        fleet = Fleet(fleet_members(agents, root, broker_port, source))
        try:
            hq.start()
            await source.start(RATE, 3600)
            started = time.monotonic()
            await fleet.start()
            print(f"   {agents} agents up in {time.monotonic() - started:.0f} s", flush=True)
            return await _scenarios(broker, source, hq, fleet, outage)
        finally:
            await fleet.stop()
            await source.stop()
            hq.stop()
            broker.stop()


async def _scenarios(
    broker: FleetBroker, source: PlantSource, hq: Hq, fleet: Fleet, outage: float
) -> list[Figure]:
    first = {member.site: hq.release(member.site, "JO-1") for member in fleet.members}
    await _until(lambda: all(hq.applied(site, m) for site, m in first.items()), 120, "JO-1")
    steady = await _steady(broker, hq)
    down = await _hub_down(broker, hq, fleet, outage)
    restart = await _restart_without_sessions(broker, hq, fleet)
    await source.stop()
    lost, redelivered = await _account(hq, fleet)
    twice, missing = _applied(hq, fleet)
    hold = await _hold(broker, quick=len(fleet.members) < 20)
    _print(len(fleet.members), outage, steady, down, restart, lost, redelivered, twice, missing)
    _print_hold(*hold)
    return [
        *_figures(len(fleet.members), outage, steady, down, restart, lost, twice, redelivered),
        *_hold_figures(*hold),
    ]


async def _hold(broker: FleetBroker, *, quick: bool) -> tuple[Held, float, float]:
    sessions = int(os.environ.get("FLEET_IDLE_SESSIONS", "500" if quick else "5000"))
    held = await hold_sessions(broker, sessions)
    rate, cpu_per_message = await ingest_ceiling(broker, 10_000 if quick else 50_000)
    return held, rate, cpu_per_message


def _print_hold(held: Held, rate: float, cpu_per_message: float) -> None:
    print(
        f"   idle sessions: {held.sessions} connected in {held.connect_seconds:.1f} s,"
        f" broker +{held.rss_mb_added:.1f} MB ({1024 * held.rss_mb_added / held.sessions:.1f}"
        f" KB each), {held.cpu_seconds:.2f} s CPU"
    )
    print(
        f"   raw paho QoS 1 into the broker: {rate:,.0f} msg/s,"
        f" broker CPU {cpu_per_message:.1f} us per message"
    )


def _hold_figures(held: Held, rate: float, cpu_per_message: float) -> list[Figure]:
    sessions = f"{held.sessions} idle persistent sessions"
    return [
        Figure(SCENARIO, sessions, "connected in", "s", held.connect_seconds,
               higher_is_better=False),
        Figure(SCENARIO, sessions, "broker RSS per session", "KB",
               1024 * held.rss_mb_added / held.sessions, higher_is_better=False),
        Figure(SCENARIO, sessions, "broker CPU per connect", "ms",
               1000 * held.cpu_seconds / held.sessions, higher_is_better=False),
        Figure(SCENARIO, "raw paho QoS 1, one publisher", "into the broker", "msg/s", rate),
        Figure(SCENARIO, "raw paho QoS 1, one publisher", "broker CPU per message", "us",
               cpu_per_message, higher_is_better=False),
    ]  # fmt: skip


def _applied(hq: Hq, fleet: Fleet) -> tuple[int, int]:
    """(changes that took effect at a MES more than once, orders HQ released that never did)."""
    twice = missing = 0
    for member in fleet.members:
        twice += sum(count - 1 for count in member.mes.state.applied_twice().values())
        applied = {order for order, _ in member.mes.state.applied_orders()}
        missing += len(hq.released(member.site) - applied)
    return twice, missing


async def _steady(broker: FleetBroker, hq: Hq) -> tuple[float, float, float]:
    """Messages/s at HQ, broker CPU (% of one core) and RSS (MB) over STEADY_SECONDS."""
    cpu, start = broker.cpu_seconds(), time.time()
    await asyncio.sleep(STEADY_SECONDS)
    end = time.time()
    rate = hq.received(int(start) + 1, int(end)) / max(1, int(end) - int(start) - 1)
    return rate, 100 * (broker.cpu_seconds() - cpu) / (end - start), broker.rss_mb()


async def _hub_down(broker: FleetBroker, hq: Hq, fleet: Fleet, outage: float) -> Recovery:
    print(f"   A: the hub goes down for {outage:.0f} s", flush=True)
    broker.stop()  # SIGTERM: Mosquitto writes its sessions and queues to disk
    await asyncio.sleep(min(5.0, outage / 2))
    during = {member.site: hq.release(member.site, "JO-2") for member in fleet.members}
    await asyncio.sleep(max(0.0, outage - min(5.0, outage / 2)))
    broker.start()
    back = time.time()
    recovery = Recovery("A")
    await _recover(
        recovery, back, broker, hq, fleet, lambda site: hq.applied(site, during[site]) > 0
    )
    return recovery


async def _restart_without_sessions(broker: FleetBroker, hq: Hq, fleet: Fleet) -> Recovery:
    print("   B: the broker restarts without its sessions", flush=True)
    await asyncio.sleep(5.0)
    fleet.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.0)  # what the broker accepted reaches HQ before it dies
        hq.subscribed.clear()
        broker.kill()
        broker.persistence = False
        broker.start()
        await asyncio.to_thread(hq.subscribed.wait, 10)
        for member in fleet.members:
            hq.release(member.site, "JO-3")  # no session subscribes to it: the broker drops it
        await asyncio.sleep(0.5)
    finally:
        back = time.time()
        fleet.signal(signal.SIGCONT)
    recovery = Recovery("B")
    members = {member.site: member for member in fleet.members}
    await _recover(
        recovery, back, broker, hq, fleet, lambda site: _resynced(hq, members[site], back)
    )
    recovery.resyncs = hq.resyncs_after(back)
    return recovery


def _resynced(hq: Hq, member: Member, since: float) -> bool:
    """A snapshot sent after ``since`` was applied, and the order lost with the sessions (JO-3)
    took effect at the site's MES."""
    applied = {order for order, _ in member.mes.state.applied_orders()}
    return "JO-3" in applied and hq.snapshot_applied_since(member.site, since)


async def _recover(
    recovery: Recovery,
    back: float,
    broker: FleetBroker,
    hq: Hq,
    fleet: Fleet,
    settled: Callable[[str], bool],
) -> None:
    """Poll until every agent is clear or CLEAR_WITHIN passes; fill ``recovery``."""
    deadline = time.monotonic() + CLEAR_WITHIN
    while len(recovery.clear) < len(fleet.members) and time.monotonic() < deadline:
        now = time.time()
        for member in fleet.members:
            if member.site in recovery.clear:
                continue
            reconnect = hq.reconnected_after(member.site, back)
            if reconnect is None:
                continue
            recovery.reconnect[member.site] = reconnect
            store = fleet.inspect(member, now)
            # Drained: nothing left that was queued before the broker came back.
            drained = store is not None and all(
                lane.oldest_age is None or lane.oldest_age <= now - back for lane in store.lanes
            )
            if drained and settled(member.site):
                recovery.clear[member.site] = now - back
        await asyncio.sleep(POLL)
    recovery.broker_cpu = broker.cpu_seconds()
    end = back + (recovery.all_clear or CLEAR_WITHIN)
    recovery.peak_rate = hq.peak_rate(int(back), int(end) + 1)
    recovery.received = hq.received(int(back), int(end) + 1)
    missing = sorted(set(m.site for m in fleet.members) - set(recovery.clear))
    if missing:
        print(f"   {recovery.name}: not clear within {CLEAR_WITHIN:.0f} s: {missing}", flush=True)


async def _account(hq: Hq, fleet: Fleet) -> tuple[int, int]:
    """After the plant went quiet: every outbox empty, then (lost, redelivered) at HQ."""

    def empty() -> bool:
        stores = [fleet.inspect(member, time.time()) for member in fleet.members]
        return all(store is not None and store.messages == 0 for store in stores)

    await _until(empty, 120, "every outbox empty")
    await asyncio.sleep(2.0)
    lost = 0
    for member in fleet.members:
        store = fleet.inspect(member, time.time())
        assert store is not None
        lost += hq.missing(member.site, {s.stream: s.last_seq for s in store.streams})
    return lost, hq.duplicates()


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"fleet: {what} not reached within {within:.0f} s")
        await asyncio.sleep(POLL)


def _print(
    agents: int,
    outage: float,
    steady: tuple[float, float, float],
    down: Recovery,
    restart: Recovery,
    lost: int,
    redelivered: int,
    twice: int,
    missing: int,
) -> None:
    rate, cpu, rss = steady
    print(
        f"   steady: {agents} agents, {rate:.0f} msg/s at HQ, broker {cpu:.1f}% CPU,  {rss:.1f} MB"
    )
    for recovery, title in (
        (down, f"A: hub down {outage:.0f} s"),
        (restart, "B: restart, sessions lost"),
    ):
        times = sorted(recovery.reconnect.values())
        print(f"   {title}: reconnect after the broker is back (s), per agent:")
        print(histogram(times))
        print(f"   {title}: all-clear per agent (s):")
        print(histogram(sorted(recovery.clear.values())))
        print(
            f"   {title}: all clear after {recovery.all_clear or float('nan'):.1f} s"
            f" ({len(recovery.clear)}/{agents} agents); broker CPU {recovery.broker_cpu:.2f} s"
            f" from its start; {recovery.received} msgs at HQ, peak {recovery.peak_rate} msg/s"
        )
        if recovery.resyncs:
            print(f"   {title}: resync requests {sum(recovery.resyncs.values())}")
    print(
        f"   lost {lost}, applied twice {twice}, released but never applied {missing},"
        f" redelivered (dropped by HQ) {redelivered}"
    )


def _figures(
    agents: int,
    outage: float,
    steady: tuple[float, float, float],
    down: Recovery,
    restart: Recovery,
    lost: int,
    twice: int,
    redelivered: int,
) -> list[Figure]:
    rate, cpu, rss = steady
    fleet = f"{agents} agents"
    figures = [
        Figure(SCENARIO, f"{fleet}, steady", "messages through the hub", "msg/s", rate),
        Figure(SCENARIO, f"{fleet}, steady", "broker CPU", "% of a core", cpu,
               higher_is_better=False),
        Figure(SCENARIO, f"{fleet}, steady", "broker RSS", "MB", rss, higher_is_better=False),
    ]  # fmt: skip
    for recovery, case in (
        (down, f"{fleet}, A: hub down {outage:.0f} s"),
        (restart, f"{fleet}, B: restart, sessions lost"),
    ):
        times = sorted(recovery.reconnect.values()) or [float("nan")]
        clear = recovery.all_clear
        notes = {"clear": len(recovery.clear), "reconnect_s": [round(t, 2) for t in times]}
        if recovery.resyncs:
            notes["resync_requests"] = sum(recovery.resyncs.values())
        figures += [
            Figure(SCENARIO, case, "reconnect p50", "s", statistics.median(times),
                   higher_is_better=False, notes=notes),
            Figure(SCENARIO, case, "reconnect max", "s", times[-1], higher_is_better=False),
            Figure(SCENARIO, case, "time to all-clear", "s",
                   clear if clear is not None else float("nan"),
                   target="every agent clear", met=len(recovery.clear) == agents,
                   higher_is_better=False),
            Figure(SCENARIO, case, "broker CPU, start to all-clear", "s", recovery.broker_cpu,
                   higher_is_better=False),
            Figure(SCENARIO, case, "peak messages through the hub", "msg/s",
                   recovery.peak_rate),
        ]  # fmt: skip
    figures += [
        Figure(SCENARIO, fleet, "lost", "messages", lost, target="0", met=lost == 0,
               higher_is_better=False, notes={"redelivered_dropped_by_hq": redelivered}),
        Figure(SCENARIO, fleet, "applied twice", "orders", twice, target="0", met=twice == 0,
               higher_is_better=False),
    ]  # fmt: skip
    return figures

"""The faults, each injected at a random moment and, where it has one, its own check.

Two lanes run at once, so faults overlap as they do in a plant:

    agent lane        SIGKILL at a random moment, while a confirmation is being committed,
                      while a down message arrives, while a backlog drains; a corrupt store
    environment lane  broker restart (sessions kept / lost), half-open link, OPC UA server
                      restart, MES 500s, MES stalls, disk full, clock jump

Whatever a fault does to the agent, the end-of-run accounting (``chaos.report``) decides
whether anything was lost or applied twice. The checks here are about each fault's own promise:
a half-open link is noticed, a full disk refuses business messages with a clear error and the
agent recovers, a corrupt store is quarantined loudly, the agent starts again after each kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx

from chaos.rig import Rig, StoreContents, read_store

Fault = Callable[[Rig], Awaitable[None]]

KILL_RANDOM = "agent SIGKILL, random moment"
KILL_CONFIRMATION = "agent SIGKILL, confirmation in flight"
KILL_DOWN = "agent SIGKILL, down message arriving"
KILL_DRAIN = "agent SIGKILL, backlog draining"
CORRUPT_STORE = "corrupt store at start-up"
BROKER_RESTART = "broker restart, sessions kept"
BROKER_LOSES = "broker restart, sessions lost"
HALF_OPEN = "half-open link (blackhole)"
OPCUA_RESTART = "OPC UA server restart"
MES_500 = "MES answers 500"
MES_STALL = "MES stalls (timeouts)"
DISK_FULL = "disk full under the store"
CLOCK_JUMP = "clock jump (wall clock stepped)"

KILLS = (KILL_RANDOM, KILL_CONFIRMATION, KILL_DOWN, KILL_DRAIN)
BROKER_RESTARTS = (BROKER_RESTART, BROKER_LOSES)


# ---- the agent lane ---------------------------------------------------------------------------


async def kill_at_random(rig: Rig) -> None:
    """SIGKILL some time after start-up, wherever the agent happens to be."""
    await asyncio.sleep(rig.rng.uniform(0.0, 1.0))
    async with rig.exclusive(agent=True):
        await _kill_and_restart(rig, KILL_RANDOM)


async def kill_during_confirmation(rig: Rig) -> None:
    """SIGKILL 0-10 ms after a confirmation POST went out: inside the API's outbox commit, or
    just before or after it. An answered POST is committed; an unanswered one may be either."""
    async with rig.exclusive(agent=True):
        post = asyncio.create_task(post_confirmation(rig))
        await asyncio.sleep(rig.rng.uniform(0.0, 0.01))
        await _kill_and_restart(rig, KILL_CONFIRMATION)
        await post


async def kill_during_down_message(rig: Rig) -> None:
    """SIGKILL 0-30 ms after HQ's next down message reached the broker: the agent is receiving
    it, committing it to the inbox, acking it, or applying it."""
    async with rig.exclusive(agent=True):
        published = len(rig.hq.published)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while len(rig.hq.published) == published:  # noqa: ASYNC110 - no event for it
                    await asyncio.sleep(0.005)
        await asyncio.sleep(rig.rng.uniform(0.0, 0.03))
        await _kill_and_restart(rig, KILL_DOWN)


async def kill_while_draining(rig: Rig) -> None:
    """Cut the hub link for 1-2 s so a backlog builds, let it back, and SIGKILL 0-100 ms after
    the broker's first bytes reach the agent again: while the backlog is published and the
    PUBACKed batches are deleted. Timed, not synchronised with the agent."""
    async with rig.exclusive(agent=True, link=True):
        rig.proxy.refuse()
        await asyncio.sleep(rig.rng.uniform(1.0, 2.0))
        healed = time.monotonic()
        rig.proxy.heal()
        await _until(lambda: rig.proxy.last_forwarded_down > healed, 10, every=0.005)
        await asyncio.sleep(rig.rng.uniform(0.0, 0.1))
        await _kill_and_restart(rig, KILL_DRAIN)


async def _kill_and_restart(rig: Rig, kind: str) -> None:
    rig.agent.reap()  # an agent that ended by itself is recorded as such, not as a kill
    if rig.agent.running:
        rig.agent.kill()
        rig.tally.faults[kind] += 1
    await asyncio.sleep(rig.rng.uniform(0.05, 0.5))
    rig.agent.start()
    rig.tally.check(kind, await rig.agent_up(), "the agent did not answer /healthz within 45 s")


async def corrupt_store(rig: Rig) -> None:
    """Stop the agent (drained), write garbage over its store, start it: the store must be
    moved aside and reported, and the agent must start on a fresh one and say so loudly."""
    async with rig.exclusive(agent=True, link=True):
        await _corrupt_store(rig)


async def _corrupt_store(rig: Rig) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while not await _outbox_empty(rig):  # noqa: ASYNC110 - an HTTP probe
                await asyncio.sleep(0.2)
    await asyncio.to_thread(rig.agent.terminate)
    await _close_epoch(rig)
    before = set(os.listdir(rig.store.parent))
    _scribble(rig.store, rig.rng.randbytes(64 * 1024))
    rig.tally.faults[CORRUPT_STORE] += 1
    log_start = rig.agent.start()
    started = await rig.agent_up()  # 45 s, as after every kill
    rig.tally.check(CORRUPT_STORE, started, "the agent did not start on a fresh store")
    if not started:
        await _operator_replaces_store(rig)
    await asyncio.sleep(1.0)
    aside = sorted(set(os.listdir(rig.store.parent)) - before - {rig.store.name + "-journal"})
    rig.tally.check(CORRUPT_STORE, bool(aside), "no quarantined copy next to the store")
    said = _log_since(rig, log_start).lower()
    rig.tally.check(
        CORRUPT_STORE,
        "quarantin" in said or "corrupt" in said,
        "the log does not say the store was quarantined",
    )
    for name in aside:  # they fill the small tmpfs otherwise
        with contextlib.suppress(OSError):
            (rig.store.parent / name).unlink()


async def _operator_replaces_store(rig: Rig) -> None:
    """What plant IT would do when the agent refuses a corrupt store: move it away by hand.

    A slow agent (a loaded machine) may have started on a fresh store after all and sent from
    it: that store's epoch is closed too, or its seqs would count as reused by the next one."""
    await asyncio.to_thread(rig.agent.terminate)
    with contextlib.suppress(sqlite3.DatabaseError, ValueError):  # the corrupt one: no sends
        contents = read_store(rig.store)
        epoch = rig.checker.epoch()
        record_store(rig, epoch, contents)
        rig.tally.destroyed |= {(epoch, stream, seq) for stream, seq in contents.waiting}
        await checker_has(rig, epoch, contents, within=15)
        rig.checker.new_epoch()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            rig.store.with_name(rig.store.name + suffix).unlink()
    rig.agent.start()
    await rig.agent_up()


async def _close_epoch(rig: Rig) -> None:
    """Record what the old store committed, wait until the checker has what was delivered,
    and open a new epoch: the fresh store numbers every stream from 1 again."""
    epoch = rig.checker.epoch()
    try:
        contents = read_store(rig.store)
    except Exception as exc:  # reported, and the run goes on
        rig.tally.check(CORRUPT_STORE, False, f"the old store could not be read: {exc}")
        rig.checker.new_epoch()
        return
    record_store(rig, epoch, contents)
    rig.tally.destroyed |= {(epoch, stream, seq) for stream, seq in contents.waiting}
    await checker_has(rig, epoch, contents, within=15)
    rig.checker.new_epoch()


def record_store(rig: Rig, epoch: int, contents: StoreContents) -> None:
    """What one epoch's store committed, for the accounting."""
    rig.tally.evicted[epoch] = rig.tally.evicted.get(epoch, 0) + contents.evicted
    for stream, seq in contents.last_seqs.items():
        rig.tally.expected[(epoch, stream)] = seq


async def checker_has(rig: Rig, epoch: int, contents: StoreContents, within: float) -> None:
    """Wait (bounded) until the checker received every stream up to what was delivered: the
    last committed seq, less the rows that were still waiting in the outbox."""
    wanted = {}
    for stream, last in contents.last_seqs.items():
        seq = last
        while seq > 0 and (stream, seq) in contents.waiting:
            seq -= 1
        wanted[stream] = seq
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while True:
                highest = rig.checker.highest(epoch)
                if all(highest.get(stream, 0) >= seq for stream, seq in wanted.items()):
                    return
                await asyncio.sleep(0.2)


def _scribble(path: os.PathLike[str], garbage: bytes) -> None:
    """Overwrite the file's start (its header and first pages) in place."""
    with open(path, "r+b") as file:
        file.write(garbage)


def _log_since(rig: Rig, offset: int) -> str:
    with rig.agent.log_file.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


async def _outbox_empty(rig: Rig) -> bool:
    status = await rig.api.status()
    return status is not None and status["outbox"]["depth"] == 0


# ---- the environment lane ---------------------------------------------------------------------


async def restart_broker(rig: Rig) -> None:
    """SIGTERM the broker (it saves sessions and queued messages), down 0.5-3 s, start."""
    async with rig.exclusive(link=True):
        await _restart_broker(rig)


async def _restart_broker(rig: Rig) -> None:
    await asyncio.to_thread(rig.broker.stop)
    rig.tally.faults[BROKER_RESTART] += 1
    await asyncio.sleep(rig.rng.uniform(0.5, 3.0))
    await asyncio.to_thread(rig.broker.start)


async def restart_broker_losing_sessions(rig: Rig) -> None:
    """SIGKILL the broker and delete its persistence: every session and queued message is gone.

    The agent's link is cut 0.5 s first, so the broker hands what it already acknowledged to
    the checker before it dies, and opened again only once the checker has subscribed again:
    the checker stands for HQ's durable consumer, and a message the broker itself destroyed
    after its PUBACK would not be the agent's loss. What the agent must survive stays: no
    session on reconnect, down messages queued for it lost (it must ask HQ for a snapshot).
    """
    async with rig.exclusive(link=True):
        await _restart_broker_losing_sessions(rig)


async def _restart_broker_losing_sessions(rig: Rig) -> None:
    rig.proxy.refuse()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(rig.broker.kill)
    with contextlib.suppress(FileNotFoundError):
        (rig.broker.workdir / "mosquitto.db").unlink()
    rig.tally.faults[BROKER_LOSES] += 1
    connects = rig.checker.connects
    await asyncio.sleep(rig.rng.uniform(0.2, 2.0))
    await asyncio.to_thread(rig.broker.start)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(15):
            while rig.checker.connects == connects:  # noqa: ASYNC110 - a thread's counter
                await asyncio.sleep(0.05)
    rig.proxy.heal()


async def half_open(rig: Rig) -> None:
    """Blackhole the agent's link for 6-9 s: it must notice through keep-alive, and it must be
    connected again within 30 s of the network coming back."""
    async with rig.exclusive(agent=True, link=True):
        await _half_open(rig)


async def _half_open(rig: Rig) -> None:
    await rig.hub_linked(20)
    noticed = len(rig.proxy.noticed)
    rig.proxy.blackhole()
    rig.tally.faults[HALF_OPEN] += 1
    await asyncio.sleep(rig.rng.uniform(6.0, 9.0))
    rig.tally.check(
        HALF_OPEN,
        len(rig.proxy.noticed) > noticed,
        "the agent kept a dead link open for the whole blackhole",
    )
    for seconds in rig.proxy.noticed[noticed : noticed + 1]:
        rig.tally.observations["half-open noticed after (s)"].append(seconds)
    healed = time.monotonic()
    rig.proxy.heal()
    back = await _until(lambda: rig.proxy.last_forwarded_down > healed, 30)
    rig.tally.check(HALF_OPEN, back is not None, "no reconnect within 30 s of the heal")
    if back is not None:
        rig.tally.observations["half-open reconnected after heal (s)"].append(back)


async def restart_opcua(rig: Rig) -> None:
    """Kill the OPC UA server and start it again: telemetry must flow again within 30 s."""
    await asyncio.to_thread(rig.plant.stop, kill=rig.rng.random() < 0.5)
    rig.tally.faults[OPCUA_RESTART] += 1
    await asyncio.sleep(rig.rng.uniform(0.5, 2.0))
    await asyncio.to_thread(rig.plant.start)
    restarted = time.monotonic()
    back = await _until(lambda: rig.checker.last_telemetry > restarted, 30)
    if back is not None:
        rig.tally.observations["telemetry again after OPC UA restart (s)"].append(back)
    elif rig.agent.running:
        rig.tally.check(OPCUA_RESTART, False, "no telemetry within 30 s of the server restart")


async def mes_errors(rig: Rig) -> None:
    """The MES answers 500 for 2-5 s: changes wait in the inbox and apply once it is back."""
    rig.mes.state.fail_with = 500
    rig.tally.faults[MES_500] += 1
    await asyncio.sleep(rig.rng.uniform(2.0, 5.0))
    rig.mes.state.fail_with = None


async def mes_stall(rig: Rig) -> None:
    """The MES takes 3 s per request (the agent gives up after 1.5 s) for 3-6 s; half of the
    time it applies the change before stalling, the window where a retry must not apply twice."""
    after = rig.rng.random() < 0.5
    if after:
        rig.mes.state.response_delay = 3.0
    else:
        rig.mes.state.stall_before = 3.0
    rig.tally.faults[MES_STALL] += 1
    await asyncio.sleep(rig.rng.uniform(3.0, 6.0))
    rig.mes.state.response_delay = rig.mes.state.stall_before = 0.0


async def disk_full(rig: Rig) -> None:
    """Fill the store's tmpfs with a ballast file for 4-8 s, then delete it.

    While full: confirmations must be refused with an answer that names the cause (not
    accepted and then lost); afterwards the agent must take confirmations again within 30 s.
    """
    if not rig.tmpfs:
        return
    async with rig.exclusive(agent=True):
        await _disk_full(rig)


async def _disk_full(rig: Rig) -> None:
    await rig.agent_up(20)
    refused_before = sum(rig.tally.refused.values())
    ballast = rig.store.parent / "ballast"
    await asyncio.to_thread(_fill, ballast)
    rig.tally.faults[DISK_FULL] += 1
    deadline = time.monotonic() + rig.rng.uniform(4.0, 8.0)
    while time.monotonic() < deadline:
        await post_confirmation(rig)
        await asyncio.sleep(0.2)
    ballast.unlink()
    refusals = [reason for reason in rig.tally.refused if "disk" in reason.lower()]
    if sum(rig.tally.refused.values()) > refused_before:
        rig.tally.check(DISK_FULL, bool(refusals), "refusals do not say the disk is full")
    else:
        rig.tally.observations["disk full: windows without a refusal"].append(1)
    recovered = await _until_async(lambda: _accepts_confirmations(rig), 30)
    rig.tally.check(DISK_FULL, recovered is not None, "no confirmation accepted 30 s after")
    if recovered is not None:
        rig.tally.observations["disk freed → confirmations accepted (s)"].append(recovered)


def _fill(path: os.PathLike[str]) -> None:
    """Write until ENOSPC, in large then small chunks, so nothing is left."""
    with open(path, "wb", buffering=0) as file:
        for chunk in (1 << 20, 1 << 12, 1 << 9):
            block = b"\0" * chunk
            with contextlib.suppress(OSError):
                while file.write(block):
                    pass


async def _accepts_confirmations(rig: Rig) -> bool:
    return await post_confirmation(rig) == 202


async def clock_jump(rig: Rig) -> None:
    """Step the agent's wall clock 5 min - 2 h forward or back, hold 3-8 s, step it back."""
    if rig.clock is None:
        return
    step = rig.rng.choice((-1, 1)) * rig.rng.randint(300, 7200)
    rig.clock.set(step)
    rig.tally.faults[CLOCK_JUMP] += 1
    await asyncio.sleep(rig.rng.uniform(3.0, 8.0))
    rig.clock.set(0)
    rig.tally.faults[CLOCK_JUMP] += 1


# ---- load and helpers ---------------------------------------------------------------------------


async def post_confirmation(rig: Rig) -> int | None:
    """POST one production confirmation, as the MES does; record what became of it. Returns
    the status code, or None when no answer came."""
    confirmation_id = f"C-{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC).isoformat()
    body = {
        "confirmation_id": confirmation_id,
        "order_id": f"CONF-{rig.rng.randint(1, 12):02d}",
        "revision": 1,
        "good_quantity": {"value": "5", "unit": "pcs"},
        "scrap_quantity": {"value": "0", "unit": "pcs"},
        "actual_start": now,
        "actual_end": now,
        "final": False,
    }
    rig.tally.posted += 1
    try:
        response = await rig.api.confirm(body)
    except httpx.ConnectError:
        rig.tally.unreachable += 1
        return None
    except httpx.HTTPError:
        rig.tally.cut.add(confirmation_id)
        return None
    if response.status_code == 202:
        rig.tally.committed[response.json()["message_id"]] = confirmation_id
    else:
        rig.tally.refused[f"{response.status_code} {_detail(response)}"] += 1
    return response.status_code


def _detail(response: httpx.Response) -> str:
    """A refusal's reason: the API's JSON ``detail``, else the start of whatever body came (a
    server stopping mid-request answers without JSON: a refusal to show, not a harness crash)."""
    try:
        return str(response.json().get("detail", ""))[:120]
    except (ValueError, AttributeError):
        return repr(response.text[:120])


async def _until(condition: Callable[[], bool], within: float, every: float = 0.05) -> float | None:
    """Seconds until ``condition()`` held, or None after ``within``."""
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - polled state of other threads
                await asyncio.sleep(every)
            return time.monotonic() - started
    return None


async def _until_async(condition: Callable[[], Awaitable[bool]], within: float) -> float | None:
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not await condition():  # noqa: ASYNC110 - an HTTP probe
                await asyncio.sleep(0.3)
            return time.monotonic() - started
    return None


AGENT_LANE: dict[str, tuple[float, Fault]] = {
    KILL_RANDOM: (4.0, kill_at_random),
    KILL_CONFIRMATION: (2.0, kill_during_confirmation),
    KILL_DOWN: (2.0, kill_during_down_message),
    KILL_DRAIN: (1.5, kill_while_draining),
    CORRUPT_STORE: (0.2, corrupt_store),
}
"""Kind → (weight, injector). Every kind runs once first, in random order; then by weight."""

ENVIRONMENT_LANE: dict[str, tuple[float, Fault]] = {
    BROKER_RESTART: (3.0, restart_broker),
    BROKER_LOSES: (2.0, restart_broker_losing_sessions),
    HALF_OPEN: (1.0, half_open),
    OPCUA_RESTART: (1.0, restart_opcua),
    MES_500: (1.0, mes_errors),
    MES_STALL: (1.0, mes_stall),
    DISK_FULL: (0.8, disk_full),
    CLOCK_JUMP: (0.8, clock_jump),
}

ALL_KINDS = (*AGENT_LANE, *ENVIRONMENT_LANE)

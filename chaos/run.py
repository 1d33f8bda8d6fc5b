"""``python -m chaos.run --minutes N --seed S``: the bounded fault-injection run.

    build      tmpfs for the store (root only), Mosquitto, the proxy, the MES, the plant
               process, the checker thread, the agent process
    exercise   steady load both ways (confirmations up, schedule changes down, telemetry)
               while two fault lanes inject faults until the time is up (every kind at least
               once first)
    drain      every fault healed, new load stopped; wait until the agent's outbox and inbox
               are empty and the plant has every order at its latest revision; SIGTERM
    account    the store's committed sequences against what the checker received
               (``chaos.report``), and the table

Every child process is ended in ``finally`` (Ctrl-C included); everything lives in one
temporary directory, removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chaos import faults
from chaos.agent import (
    SITE,
    AgentApi,
    AgentProcess,
    AgentSettings,
    Clock,
    config_toml,
    find_libfaketime,
)
from chaos.checker import Checker
from chaos.hq import Hq
from chaos.mes import MesServer
from chaos.plant import PlantProcess
from chaos.proxy import Proxy
from chaos.report import ChaosReport, account
from chaos.rig import Rig, read_store
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto, free_port

TMPFS_SIZE = "64m"
MAX_EPISODES = 100_000
"""Bound on the fault loop besides the clock."""


@dataclass(frozen=True)
class ChaosOptions:
    minutes: float
    seed: int
    confirmations_per_second: float = 5.0
    down_interval: float = 0.5
    down_window: int | None = 10
    """HQ's changes not yet in effect at the plant, at most (``chaos.hq``); None: no bound."""
    drain_timeout: float = 180.0
    keep: bool = False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.run", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="fault injection time")
    parser.add_argument("--seed", type=int, default=None, help="default: random, printed")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    options = ChaosOptions(minutes=args.minutes, seed=seed, keep=args.keep)
    print(f"chaos: {args.minutes:g} min of faults, seed {seed}", flush=True)
    try:
        report = asyncio.run(run_chaos(options))
    except KeyboardInterrupt:
        print("chaos: interrupted; every child process was stopped", file=sys.stderr)
        return 130
    print(report.table(), flush=True)
    return 0 if report.passed else 1


async def run_chaos(options: ChaosOptions) -> ChaosReport:
    """One whole run; see the module docstring."""
    work = Path(tempfile.mkdtemp(prefix="plantsync-chaos-"))
    try:
        async with contextlib.AsyncExitStack() as stack:
            rig = await _build(work, options, stack)
            started = time.monotonic()
            await _exercise(rig, options)
            return account(rig, options.seed, time.monotonic() - started)
    finally:
        if options.keep:
            print(f"chaos: work directory kept: {work}", file=sys.stderr)
        else:
            _remove(work)


async def _build(work: Path, options: ChaosOptions, stack: contextlib.AsyncExitStack) -> Rig:
    rng = random.Random(options.seed)  # noqa: S311 - fault timing, not cryptography
    data = work / "data"
    data.mkdir()
    tmpfs = _mount_tmpfs(data)
    if tmpfs:
        stack.callback(_unmount, data)
    broker = Mosquitto(work / "broker", max_queued_messages=100_000)
    await asyncio.to_thread(broker.start)
    stack.callback(broker.kill)
    proxy = Proxy(broker.port)
    await proxy.start()
    stack.push_async_callback(proxy.stop)
    mes = MesServer()
    mes.start()
    stack.callback(mes.stop)
    plant_port = free_port()
    plant = PlantProcess(plant_port, options.seed, work / "plant.log")
    await asyncio.to_thread(plant.start)
    stack.callback(plant.stop, kill=True)
    store = data / "store.db"
    settings = AgentSettings(
        store=store,
        broker_port=proxy.port,
        api_port=free_port(),
        mes_url=mes.url,
        plant=SimulatedPlant(port=plant_port, job_control=False).server_config(name="line-1"),
    )
    config_file = work / "agent.toml"
    config_file.write_text(config_toml(settings))
    library = find_libfaketime()
    clock = Clock(work / "clock-offset") if library is not None else None
    environment = clock.environment(library) if clock is not None and library else None
    agent = AgentProcess(config_file, work / "agent.log", environment)
    hq = Hq(
        broker.url, SITE, rng, in_effect=mes.state.latest_revisions, max_ahead=options.down_window
    )
    loop = asyncio.get_running_loop()

    def resync_wanted(_: object) -> None:
        loop.call_soon_threadsafe(hq.resync_wanted.set)  # from the checker's thread

    checker = Checker(broker.url, SITE, on_resync=resync_wanted)
    await asyncio.to_thread(checker.start)
    stack.callback(checker.stop)
    api = AgentApi(settings.api_port, settings.token)
    stack.push_async_callback(api.close)
    agent.start()
    stack.callback(agent.kill)
    rig = Rig(work, store, rng, broker, proxy, mes, plant, agent, api, checker, hq, clock, tmpfs)
    if not await rig.agent_up(60):
        raise RuntimeError(f"the agent did not start; see {agent.log_file}")
    return rig


async def _exercise(rig: Rig, options: ChaosOptions) -> None:
    producing = asyncio.Event()
    producing.set()
    deadline = time.monotonic() + options.minutes * 60
    async with asyncio.TaskGroup() as tasks:
        helpers = [
            tasks.create_task(rig.hq.run(producing, options.down_interval), name="hq"),
            tasks.create_task(_confirmations(rig, producing, options), name="load"),
            tasks.create_task(_restart_when_exited(rig), name="restarter"),
            tasks.create_task(_watch_shed(rig), name="shed"),
        ]
        lanes = [
            tasks.create_task(_lane(rig, faults.AGENT_LANE, deadline, (0.1, 0.5)), name="agent"),
            tasks.create_task(
                _lane(rig, faults.ENVIRONMENT_LANE, deadline, (0.5, 2.0)), name="environment"
            ),
        ]
        await asyncio.gather(*lanes)
        print("chaos: faults done; healing and draining", flush=True)
        await _heal(rig)
        producing.clear()
        await _drain(rig, options)
        for helper in helpers:
            helper.cancel()


async def _lane(
    rig: Rig,
    lane: dict[str, tuple[float, faults.Fault]],
    deadline: float,
    calm: tuple[float, float],
) -> None:
    """Every kind once in random order, then by weight, until ``deadline``."""
    first = list(lane)
    rig.rng.shuffle(first)
    kinds, weights = list(lane), [weight for weight, _ in lane.values()]
    for _ in range(MAX_EPISODES):
        if not first and time.monotonic() >= deadline:
            return
        kind = first.pop() if first else rig.rng.choices(kinds, weights)[0]
        await lane[kind][1](rig)
        await asyncio.sleep(rig.rng.uniform(*calm))


async def _confirmations(rig: Rig, producing: asyncio.Event, options: ChaosOptions) -> None:
    """The MES confirming production at a steady rate while ``producing`` is set."""
    interval = 1.0 / options.confirmations_per_second
    while True:
        if producing.is_set():
            await faults.post_confirmation(rig)
        await asyncio.sleep(interval)


async def _restart_when_exited(rig: Rig) -> None:
    """What systemd's Restart= does: an agent that ended by itself is started again."""
    while True:
        await asyncio.sleep(0.5)
        async with rig.agent_lock:
            if rig.agent.reap() is not None:
                await asyncio.sleep(0.5)
                rig.agent.start()


async def _watch_shed(rig: Rig) -> None:
    """The agent's count of telemetry shed, per start (it restarts from 0 with each start)."""
    while True:
        await asyncio.sleep(1.0)
        value = await rig.api.metric("plantsync_telemetry_dropped")
        if value is not None:
            start = rig.agent.starts
            rig.tally.shed_telemetry[start] = max(value, rig.tally.shed_telemetry.get(start, 0))


async def _heal(rig: Rig) -> None:
    async with rig.exclusive(agent=True, link=True):
        rig.proxy.heal()
        rig.mes.state.fail_with = None
        rig.mes.state.stall_before = rig.mes.state.response_delay = 0.0
        if rig.clock is not None:
            rig.clock.set(0)
        with contextlib.suppress(FileNotFoundError):
            (rig.store.parent / "ballast").unlink()
        if not rig.broker.running:
            await asyncio.to_thread(rig.broker.start)
        if not rig.agent.running:
            rig.agent.reap()
            rig.agent.start()


async def _drain(rig: Rig, options: ChaosOptions) -> None:
    """Wait (bounded) until everything committed has left the agent and the plant is current,
    then stop the agent and read what its store committed."""
    try:
        async with asyncio.timeout(options.drain_timeout):
            while not await _settled(rig):  # noqa: ASYNC110 - an HTTP probe
                await asyncio.sleep(0.5)
    except TimeoutError:
        rig.tally.check("drain", False, f"not settled within {options.drain_timeout:.0f} s")
    async with rig.agent_lock:
        code = await asyncio.to_thread(rig.agent.terminate)
        rig.tally.check("drain", code == 0, f"the agent exited {code} on SIGTERM")
    epoch = rig.checker.epoch()
    contents = read_store(rig.store)
    faults.record_store(rig, epoch, contents)
    await faults.checker_has(rig, epoch, contents, within=20)
    waiting = len(contents.waiting)
    rig.tally.check("drain", not waiting, f"{waiting} rows still in the outbox at the end")


async def _settled(rig: Rig) -> bool:
    status = await rig.api.status()
    if status is None or status["links"]["hub"]["state"] != "up":
        return False
    if status["outbox"]["depth"] or status["inbox"]["pending"]:
        return False
    applied = rig.mes.state.latest_revisions()
    return all(applied.get(order, 0) >= rev for order, rev in rig.hq.latest_revisions().items())


def _mount_tmpfs(path: Path) -> bool:
    """A small tmpfs for the store, so the disk can be filled; root only."""
    if os.geteuid() != 0:
        print("chaos: not root: no tmpfs, so no disk-full faults", file=sys.stderr)
        return False
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if result.returncode != 0:
        print(f"chaos: no tmpfs ({result.stderr.strip()}): no disk-full faults", file=sys.stderr)
    return result.returncode == 0


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, timeout=30, capture_output=True)


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

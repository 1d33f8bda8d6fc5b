"""Footprint: the agent's idle RSS and CPU with 10,000 monitored items, and RSS over a soak.

    python -m bench.run --scenario footprint [--quick]      (make soak; SOAK_MINUTES=30)

Idle: plantsync (``plantsync run``) monitors 10,000 items of an asyncua server that changes
nothing; after the initial values have gone to the hub, RSS and CPU are read over a minute.
The bridge (bench/bridge.py, no durability) is measured the same way, as a reference.

Soak: the server changes those items at 1,000/s for ``SOAK_MINUTES`` (default 30); the agent's
RSS is sampled every 10 s. Growth is the last sample against the first one after a warm-up
(the first tenth of the soak, at least one minute when the soak is long enough), so caches
filling up at the start are not counted as a leak. Targets: idle RSS < 120 MB; growth ≤ 5 %.
Quick: 5 s idle, a 30-second soak (figures to smoke-test the scenario, not to quote).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from bench.ingest import Rig, RunResult, Subject, cpu_seconds, describe, memory_mb
from bench.report import Figure

SCENARIO = "footprint"
ITEMS = 10_000
SOAK_RATE = 1_000
IDLE_TARGET_MB = 120.0
GROWTH_TARGET = 0.05


def run(quick: bool) -> list[Figure]:
    minutes = 0.5 if quick else float(os.environ.get("SOAK_MINUTES", "30"))
    return asyncio.run(measure(idle_seconds=5.0 if quick else 60.0, soak_minutes=minutes))


async def measure(idle_seconds: float, soak_minutes: float) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as directory:
        async with Rig(Path(directory), ITEMS) as rig:
            bridge = rig.bridge()
            await rig.start(bridge)
            try:
                bridge_idle = await idle(bridge, idle_seconds)
            finally:
                await bridge.stop()
            agent = rig.plantsync()
            await rig.start(agent)
            try:
                agent_idle = await idle(agent, idle_seconds)
                samples, result = await soak(rig, agent, soak_minutes)
            finally:
                await agent.stop()
    return idle_figures(agent_idle, bridge_idle) + soak_figures(samples, result, soak_minutes)


async def idle(subject: Subject, seconds: float) -> tuple[float, float]:
    """(RSS MB, CPU % of a core) once the initial values are delivered and nothing changes."""
    before, started = cpu_seconds(subject.pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu = 100 * (cpu_seconds(subject.pid) - before) / (time.monotonic() - started)
    rss = memory_mb(subject.pid, "VmRSS")
    print(f"{subject.name:>9} idle, {ITEMS} items: rss {rss:.0f} MB, cpu {cpu:.1f}%", flush=True)
    return rss, cpu


async def soak(
    rig: Rig, subject: Subject, minutes: float
) -> tuple[list[tuple[float, float]], RunResult]:
    samples: list[tuple[float, float]] = []  # (seconds since start, RSS MB)
    seconds = minutes * 60
    interval = 10.0 if minutes >= 2 else 2.0

    async def sample() -> None:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            samples.append((elapsed, memory_mb(subject.pid, "VmRSS")))
            await asyncio.sleep(interval)
        samples.append((time.monotonic() - started, memory_mb(subject.pid, "VmRSS")))

    result = await rig.measure(subject, SOAK_RATE, seconds, during=sample)
    print(describe(result), flush=True)
    return samples, result


def growth(samples: list[tuple[float, float]], minutes: float) -> tuple[float, float, float]:
    """(RSS after warm-up, RSS at the end, growth as a fraction)."""
    warm_up = max(minutes * 60 / 10, min(60.0, minutes * 60 / 4))
    after = [rss for elapsed, rss in samples if elapsed >= warm_up] or [samples[-1][1]]
    first, last = after[0], samples[-1][1]
    return first, last, (last - first) / first


def idle_figures(agent: tuple[float, float], bridge: tuple[float, float]) -> list[Figure]:
    case = f"{ITEMS:,} items, idle"
    reference = "no-frills bridge (no durability)"
    return [
        Figure(
            SCENARIO,
            case,
            "RSS",
            "MB",
            agent[0],
            bridge[0],
            reference,
            target=f"< {IDLE_TARGET_MB:.0f} MB",
            met=agent[0] < IDLE_TARGET_MB,
            higher_is_better=False,
        ),
        Figure(
            SCENARIO,
            case,
            "CPU",
            "% of a core",
            agent[1],
            bridge[1],
            reference,
            higher_is_better=False,
        ),
    ]


def soak_figures(
    samples: list[tuple[float, float]], result: RunResult, minutes: float
) -> list[Figure]:
    first, last, grown = growth(samples, minutes)
    case = f"{ITEMS:,} items @ {SOAK_RATE:,}/s, {minutes:g} min soak"
    notes = {
        "rss_after_warm_up_mb": round(first, 1),
        "rss_end_mb": round(last, 1),
        "samples": [[round(elapsed), round(rss, 1)] for elapsed, rss in samples],
        "lost": result.lost,
        "p99_ms": round(result.p99_ms),
    }
    return [
        Figure(
            SCENARIO,
            case,
            "RSS growth",
            "%",
            100 * grown,
            target="≤ 5 %",
            met=grown <= GROWTH_TARGET,
            higher_is_better=False,
            notes=notes,
        ),
        Figure(
            SCENARIO, case, "delivered", "changes/s", result.delivered, notes={"lost": result.lost}
        ),
    ]

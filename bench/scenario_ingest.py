"""Ingest: OPC UA value changes → hub, plantsync next to a no-frills bridge in the same run.

    python -m bench.run --scenario ingest [--quick]

For 1,000 / 10,000 / 50,000 monitored items (machines of 100 tags) an asyncua server in its own
process changes items round-robin at aggregate rates from 1,000/s upwards; plantsync (``plantsync
run``, its own process, durable outbox, QoS 1) and then bench/bridge.py (no durability) read all
of them and publish to Mosquitto; a consumer process counts every change by (item, counter).

Figures per case: delivered changes/s, changes lost, latency p50 / p99 from the value's
SourceTimestamp to hub receipt, the subject's CPU (% of one core), CPU per delivered change and
peak RSS. Per item count, the best delivered rate over the rates tried is the saturation
figure. "source max" asks for 50,000/s: on a 2-core machine the asyncua source (≈ 100 µs of
CPU per change) tops out first, so that case measures both subjects at the source's limit, and
CPU per change says how far each could go on a core of its own.
Targets (issue 6): 10,000 items changing 10,000 times/s sustained with zero loss and p99 <
500 ms; at saturation ≥ 0.8x the bridge.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.ingest import Rig, RunResult, Subject, describe
from bench.report import Figure

SCENARIO = "ingest"
BRIDGE = "no-frills asyncua → paho bridge"
MAX = 50_000
"""Asks the source for more than it can write: the run shows the source-limited maximum."""
FULL = {1_000: (1_000, 5_000, MAX), 10_000: (1_000, 5_000, 10_000, MAX), 50_000: (10_000,)}
QUICK = {10_000: (10_000,)}
TARGET_ITEMS, TARGET_RATE, TARGET_P99_MS = 10_000, 10_000, 500.0


def run(quick: bool) -> list[Figure]:
    return asyncio.run(measure(quick))


async def measure(quick: bool) -> list[Figure]:
    seconds = 6.0 if quick else 20.0
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as directory:
        for items, rates in (QUICK if quick else FULL).items():
            async with Rig(Path(directory) / str(items), items) as rig:
                ours = await sweep(rig, rig.plantsync, rates, seconds)
                try:
                    theirs = await sweep(rig, rig.bridge, rates, seconds)
                except (RuntimeError, TimeoutError) as exc:
                    # A ceiling that cannot run is reported as such, not as a lost scenario.
                    print(f"the bridge failed at {items} items: {exc!r}", flush=True)
                    theirs = [_failed(mine, exc) for mine in ours]
            for mine, bridge in zip(ours, theirs, strict=True):
                figures += case_figures(mine, bridge)
            figures.append(saturation_figure(items, ours, theirs))
    return figures


async def sweep(
    rig: Rig, make: Callable[[], Subject], rates: tuple[int, ...], seconds: float
) -> list[RunResult]:
    subject = make()
    await rig.start(subject)
    try:
        results = []
        for rate in rates:
            result = await rig.measure(subject, rate, seconds)
            print(describe(result), flush=True)
            results.append(result)
        return results
    finally:
        await subject.stop()


def case_figures(mine: RunResult, bridge: RunResult) -> list[Figure]:
    rate = "source max" if mine.rate >= MAX else f"{mine.rate:,.0f}/s"
    case = f"{mine.items:,} items @ {rate}"
    target_case = (mine.items, mine.rate) == (TARGET_ITEMS, TARGET_RATE)
    notes = {
        "offered": round(mine.offered),
        "bridge_offered": round(bridge.offered),
        "duplicates": mine.duplicates,
        "bridge_duplicates": bridge.duplicates,
        **({"bridge_failed": bridge.notes["failed"]} if "failed" in bridge.notes else {}),
    }
    sustained = mine.offered >= 0.95 * mine.rate and mine.delivered >= 0.98 * mine.offered

    def figure(metric: str, unit: str, ours: float, ceiling: float, **extra: object) -> Figure:
        return Figure(
            SCENARIO,
            case,
            metric,
            unit,
            ours,
            ceiling,
            BRIDGE,
            notes=notes,
            **extra,  # type: ignore[arg-type]
        )

    return [
        figure(
            "delivered",
            "changes/s",
            mine.delivered,
            bridge.delivered,
            target="≥ 10,000/s sustained" if target_case else "",
            met=sustained if target_case else None,
        ),
        figure(
            "lost",
            "changes",
            mine.lost,
            bridge.lost,
            target="0" if target_case else "",
            met=mine.lost == 0 if target_case else None,
            higher_is_better=False,
        ),
        figure("latency p50", "ms", mine.p50_ms, bridge.p50_ms, higher_is_better=False),
        figure(
            "latency p99",
            "ms",
            mine.p99_ms,
            bridge.p99_ms,
            target="< 500 ms" if target_case else "",
            met=mine.p99_ms < TARGET_P99_MS if target_case else None,
            higher_is_better=False,
        ),
        figure("CPU", "% of a core", mine.cpu_percent, bridge.cpu_percent, higher_is_better=False),
        figure(
            "CPU per change",
            "µs",
            cpu_per_change(mine),
            cpu_per_change(bridge),
            higher_is_better=False,
        ),
        figure("peak RSS", "MB", mine.peak_rss_mb, bridge.peak_rss_mb, higher_is_better=False),
    ]


def saturation_figure(items: int, ours: list[RunResult], theirs: list[RunResult]) -> Figure:
    best, bridge_best = max(ours, key=_rate), max(theirs, key=_rate)
    return Figure(
        SCENARIO,
        f"{items:,} items, saturation",
        "best delivered",
        "changes/s",
        best.delivered,
        bridge_best.delivered,
        BRIDGE,
        target="≥ 0.8x bridge",
        met=best.delivered >= 0.8 * bridge_best.delivered,
        notes={
            "at_rate": best.rate,
            "bridge_at_rate": bridge_best.rate,
            "lost_at_best": best.lost,
            "bridge_lost_at_best": bridge_best.lost,
            "offered_max": round(max(result.offered for result in ours)),
        },
    )


def _failed(mine: RunResult, error: BaseException) -> RunResult:
    """The bridge's row when it could not run: nothing delivered, everything lost."""
    return RunResult(
        subject="bridge",
        items=mine.items,
        rate=mine.rate,
        produced=mine.produced,
        offered=0.0,
        distinct=0,
        duplicates=0,
        delivered=0.0,
        p50_ms=0.0,
        p99_ms=0.0,
        cpu_percent=0.0,
        peak_rss_mb=0.0,
        notes={"failed": repr(error)},
    )


def cpu_per_change(result: RunResult) -> float:
    """CPU microseconds per delivered change: 1e6 / this is what one core could carry."""
    return result.cpu_percent / 100 * 1e6 / max(result.delivered, 1.0)


def _rate(result: RunResult) -> float:
    return result.delivered

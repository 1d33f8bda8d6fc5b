"""One shape for every benchmark figure, and the files `make bench` writes from them.

A scenario returns `Figure`s: plantsync's number, the ceiling measured in the same run (or a peer),
their ratio and the target it is held to. `write_results` merges them into
`bench/results/latest.json` (scenarios not run this time keep their last figures) and renders the
Markdown table that docs/performance.md quotes.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Figure:
    """One measured figure against its ceiling or peer.

    `ratio` always reads "how plantsync does relative to the ceiling, higher is better":
    plantsync / ceiling for rates, ceiling / plantsync for times, latencies and sizes
    (`higher_is_better=False`). A target such as "≥ 0.8x the ceiling" reads the same either way.
    """

    scenario: str
    case: str  # e.g. "10k items @ 10k/s"
    metric: str  # e.g. "delivered/s", "p99 latency"
    unit: str  # e.g. "msg/s", "ms", "MB"
    plantsync: float
    ceiling: float | None = None
    ceiling_name: str = ""  # what the ceiling or peer is, e.g. "raw paho QoS 1"
    target: str = ""  # the target in words, e.g. "≥ 0.8x ceiling"
    met: bool | None = None  # None: no target for this figure
    higher_is_better: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.ceiling:
            return None
        if self.higher_is_better:
            return self.plantsync / self.ceiling
        return self.ceiling / self.plantsync if self.plantsync else None


def machine() -> str:
    return (
        f"{platform.node()}, {os.cpu_count()} cores, {platform.platform()},"
        f" Python {platform.python_version()}"
    )


def write_results(figures: Iterable[Figure], command: str, directory: Path = RESULTS) -> Path:
    """Merge this run's figures into latest.json (by scenario) and write latest.md beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "latest.json"
    previous: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    scenarios: dict[str, Any] = previous.get("scenarios", {})
    now = datetime.now(UTC).isoformat(timespec="seconds")
    fresh: dict[str, list[dict[str, Any]]] = {}
    for figure in figures:
        fresh.setdefault(figure.scenario, []).append({**asdict(figure), "ratio": figure.ratio})
    for scenario, rows in fresh.items():
        scenarios[scenario] = {"date": now, "command": command, "machine": machine(), "rows": rows}
    path.write_text(json.dumps({"scenarios": scenarios}, indent=2, ensure_ascii=False) + "\n")
    (directory / "latest.md").write_text(markdown(scenarios))
    return path


def markdown(scenarios: dict[str, Any]) -> str:
    lines: list[str] = []
    for scenario, run in scenarios.items():
        lines += [
            f"### {scenario}",
            "",
            f"`{run['command']}`, {run['date']}, {run['machine']}",
            "",
            "| case | metric | plantsync | ceiling / peer | ratio | target | met |",
            "|---|---|---:|---|---:|---|:-:|",
        ]
        for row in run["rows"]:
            ceiling = (
                f"{_number(row['ceiling'])} {row['unit']} ({row['ceiling_name']})"
                if row["ceiling"] is not None
                else ""
            )
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else ""
            met = {True: "yes", False: "**no**", None: ""}[row["met"]]
            lines.append(
                f"| {row['case']} | {row['metric']} | {_number(row['plantsync'])} {row['unit']} "
                f"| {ceiling} | {ratio} | {row['target']} | {met} |"
            )
        lines.append("")
    return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"

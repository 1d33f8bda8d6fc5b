"""Reading the agent's /metrics the way Prometheus does."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    answer = await api.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """One sample's value; KeyError (naming what exists) when it is absent."""
    key = (name, tuple(sorted(labels.items())))
    if key not in samples:
        names = sorted({n for n, _ in samples})
        raise KeyError(f"{key} not in /metrics; names: {names}")
    return samples[key]


def prometheus_tool(name: str) -> str:
    """``promtool`` or ``prometheus`` on PATH or beside this Python (``make promtool`` puts both
    in .venv/bin); skips the test, saying how to get it, when there is none."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(
            f"{name} not installed: `make promtool` fetches promtool and prometheus into"
            " .venv/bin (from Debian's prometheus package, without installing it)"
        )
    return found

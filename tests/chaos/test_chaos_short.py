"""The chaos run of ``make chaos``, short: every fault kind at least once under load both ways,
with a fixed seed. The ten-minute run and what each row means: docs/reliability.md."""

from __future__ import annotations

import os

import pytest

from chaos import faults
from chaos.run import ChaosOptions, run_chaos

pytestmark = pytest.mark.slow


async def test_a_short_chaos_run_loses_nothing_and_applies_nothing_twice() -> None:
    report = await run_chaos(ChaosOptions(minutes=0.5, seed=1125, drain_timeout=150))
    table = report.table()
    assert report.lost == 0, table
    assert report.applied_twice == {}, table
    assert report.reused == 0, table
    expected = set(faults.ALL_KINDS)
    if os.geteuid() != 0:  # the disk is filled on a tmpfs, which only root can mount
        expected.discard(faults.DISK_FULL)
    missing = sorted(kind for kind in expected if report.faults[kind] == 0)
    assert not missing, f"never injected: {missing}\n{table}"

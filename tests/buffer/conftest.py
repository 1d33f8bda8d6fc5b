"""The outbox tests' fixtures: ``harness`` runs a test once per back-end (memory, SQLite) over
a store of its own, ``outbox`` is that harness's first outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from plantsync.buffer.base import Outbox
from tests.buffer.harness import BACKENDS, Backend, OutboxHarness


@pytest.fixture(params=BACKENDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OutboxHarness]:
    backend: Backend = request.param
    harness = OutboxHarness(backend, tmp_path)
    yield harness
    await harness.close_all()


@pytest.fixture
async def outbox(harness: OutboxHarness) -> Outbox:
    return await harness.open()

"""Fixtures of the API tests: an attached agent over a store in tmp_path, and its client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from plantsync.agent.service import Agent
from tests.api.support import attached, client, config


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async with attached(config(tmp_path / "store.db")) as agent:
        yield agent


@pytest.fixture
async def api(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with client(agent) as api:
        yield api

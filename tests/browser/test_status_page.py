"""The status page in a real browser: Debian's Chromium, driven by Playwright, against an
agent running with a real Mosquitto, a real OPC UA server and a real HTTP MES.

``make test`` installs Chromium (``make system-deps``); without it this test fails, it does
not skip. ``playwright install`` is never used: the browser is the distribution's.
Set ``PLANTSYNC_SCREENSHOT=docs/status-page.png`` to write the README's screenshot.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from pydantic import SecretStr

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, ApiConfig, ScheduleConfig
from plantsync.config.plant import MesConfig
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, order, outcomes
from tests.e2e.support import HubRecorder, agent_config, eventually, recording, running_agent
from tests.fixtures.mes import MesServer

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("PLANTSYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "status-page-token-0123456789abcdef"  # noqa: S105 - a test token
WITHIN_MS = 30_000


def page_config(
    store: Path, broker: Mosquitto, plant: SimulatedPlant, mes: MesServer
) -> AgentConfig:
    base = agent_config(store, broker.url, plant.server_config("line-1"))
    return base.model_copy(
        update={
            "mes": MesConfig(url=mes.url, request_timeout=timedelta(seconds=5)),
            "schedule": ScheduleConfig(
                retry_initial_delay=timedelta(milliseconds=100),
                retry_max_delay=timedelta(seconds=1),
            ),
            "api": ApiConfig(port=0, token=SecretStr(TOKEN)),
        }
    )


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: run `make system-deps` as root"
            " (or: sudo apt-get install chromium fonts-liberation)",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _link_level(page: Page, link: str, level: str) -> None:
    await page.wait_for_selector(
        f'tr[data-link="{link}"][data-level="{level}"]', state="attached", timeout=WITHIN_MS
    )


async def _ack(hub: HubRecorder, message_id: str, outcome: str) -> None:
    await hub.wait_for(lambda: outcome in outcomes(hub, message_id), within=30)


async def test_the_page_shows_the_hub_going_down_and_back_and_approves_a_change(
    broker: Mosquitto,
    opcua_plant: SimulatedPlant,
    mes_server: MesServer,
    browser: Browser,
    tmp_path: Path,
) -> None:
    config = page_config(tmp_path / "store.db", broker, opcua_plant, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: _all_up(agent), within=30)
        await opcua_plant.set_value("press-1", "speed", 42.5)
        release = await hq.release(order("JO-1", starts_in=timedelta(days=2)))
        await _ack(hub, release["id"], "applied")
        soon = order("JO-1", revision=2, starts_in=timedelta(hours=1))
        revision = hq.message("schedule.revision", {"orders": [soon]})
        await hq.publish(revision)
        await _ack(hub, revision["id"], "waiting-for-approval")

        page = await browser.new_page(viewport={"width": 1400, "height": 1000})
        external: list[str] = []
        page.on(
            "request",
            lambda r: None if r.url.startswith("http://127.0.0.1") else external.append(r.url),
        )
        await page.goto(f"http://127.0.0.1:{agent.api_port}/")
        await _link_level(page, "hub", "ok")
        await page.wait_for_selector('tr[data-machine="press-1"]', timeout=WITHIN_MS)

        await asyncio.to_thread(broker.stop)
        await _link_level(page, "hub", "down")
        assert await page.get_attribute('tr[data-link="hub"]', "data-level") == "down"
        await asyncio.to_thread(broker.start)
        await _link_level(page, "hub", "ok")
        await eventually(lambda: agent.health["hub"].state.value == "up", within=30)
        await _save_screenshot(page)

        await page.fill('#login input[name="token"]', TOKEN)
        await page.click("#login button")
        await page.wait_for_selector("#logout", timeout=WITHIN_MS)
        assert TOKEN not in await page.content()
        await page.click(".approval button.approve")
        await page.wait_for_selector(".approval", state="detached", timeout=WITHIN_MS)
        await _ack(hub, revision["id"], "applied")
        await page.close()
    assert outcomes(hub, revision["id"]) == ["accepted", "waiting-for-approval", "applied"]
    assert sorted(mes_server.state.applied_orders()) == [("JO-1", 1), ("JO-1", 2)]
    assert external == [], "the page asked for something the agent does not serve"


def _all_up(agent: Agent) -> bool:
    return all(health.state.value == "up" for health in agent.health.values())


async def _save_screenshot(page: Page) -> None:
    target = os.environ.get("PLANTSYNC_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=target, full_page=True)

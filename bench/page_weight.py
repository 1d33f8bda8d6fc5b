"""The status page at a real plant's scale: 10,000 orders in the schedule, 1,000 dead letters.

    .venv/bin/python -m bench.page_weight            (Chromium at /usr/bin/chromium)

Builds a store with ``ORDERS`` applied orders (over ``WORK_CENTERS`` work centers) and
``DEAD_LETTERS`` dead letters, serves the agent's app on a loopback port (no links), and
prints: the page's HTML size and server time; each poll's bytes (the fragment), first the
full one, then the next polls as the page's own script makes them; and, in Chromium, the time
to first contentful paint and to the load event. Figures, not pass/fail; the same script runs
on any commit that has ``create_app`` and ``Agent.attach``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
from playwright.async_api import async_playwright
from pydantic import ByteSize, SecretStr

from plantsync.app import build_agent
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig, ApiConfig, HubConfig, SiteConfig, StoreConfig
from plantsync.tools.localbroker import free_port
from plantsync.web.api import create_app
from tests.fixtures.schedule import WORK_CENTERS, fill

ORDERS = 10_000
DEAD_LETTERS = 1_000
SITE = "plant-01"
TOKEN = "bench-page-token-0123456789abcdef"  # noqa: S105 - a bench value
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
POLLS = 3


def config(store: Path) -> AgentConfig:
    return AgentConfig(
        site=SiteConfig(id=SITE),
        hub=HubConfig(url="mqtt://127.0.0.1:1"),
        store=StoreConfig(path=store, max_size=ByteSize(1 << 28)),
        api=ApiConfig(port=0, token=SecretStr(TOKEN)),
    )


async def measure() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-page-") as directory:
        settings = config(Path(directory) / "store.db")
        agent = build_agent(settings, config_hash="bench0000000")
        async with await Store.open(settings.store.path, max_size_bytes=1 << 28) as store:
            await agent.attach(store, asyncio.Event())
            await fill(store, ORDERS, DEAD_LETTERS, site=SITE)
            port = free_port()
            server = uvicorn.Server(
                uvicorn.Config(create_app(agent), host="127.0.0.1", port=port, log_level="error")
            )
            serving = asyncio.create_task(server.serve())
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
                await asyncio.sleep(0.05)
            try:
                await report(f"http://127.0.0.1:{port}")
            finally:
                server.should_exit = True
                await serving


async def report(base: str) -> None:
    print(f"orders {ORDERS}, dead letters {DEAD_LETTERS}, work centers {WORK_CENTERS}")
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        began = time.perf_counter()
        page = await http.get("/")
        print(
            f"GET /                 {len(page.content):>10,} bytes"
            f"  {1000 * (time.perf_counter() - began):7.0f} ms server+transfer"
        )
        began = time.perf_counter()
        first = await http.get("/status/fragment")
        print(
            f"GET /status/fragment  {len(first.content):>10,} bytes"
            f"  {1000 * (time.perf_counter() - began):7.0f} ms (a full update)"
        )
        etag = first.headers.get("etag")
        if etag:
            again = await http.get("/status/fragment", headers={"If-None-Match": etag})
            print(
                f"  again, If-None-Match {len(again.content):>7,} bytes  status {again.status_code}"
            )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS
        )
        tab = await browser.new_page(viewport={"width": 1400, "height": 1000})
        polls: list[int] = []

        async def counted(response: object) -> None:
            url = getattr(response, "url", "")
            if "/status/fragment" in url:
                body = await response.body()  # type: ignore[attr-defined]
                polls.append(len(body))

        tab.on("response", lambda r: asyncio.ensure_future(counted(r)))
        began = time.perf_counter()
        await tab.goto(base + "/", wait_until="load", timeout=120_000)
        loaded = time.perf_counter() - began
        paint = await tab.evaluate(
            "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime"
        )
        height = await tab.evaluate("() => document.documentElement.scrollHeight")
        print(
            f"Chromium: first contentful paint {paint or 0:.0f} ms, load {1000 * loaded:.0f} ms,"
            f" page height {height:,} px"
        )
        deadline = time.monotonic() + 20
        while len(polls) < POLLS and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded
            await asyncio.sleep(0.2)
        print(f"Chromium's own polls: {', '.join(f'{size:,}' for size in polls)} bytes each")
        await browser.close()


if __name__ == "__main__":
    asyncio.run(measure())

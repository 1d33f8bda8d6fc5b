"""The status page: every section rendered by the agent, only relative URLs, actions behind
the token and the CSRF token, no secret in any answer."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from plantsync.web.apiviews import LinkView
from plantsync.web.depth import DepthHistory, DepthSample, depth_chart
from plantsync.web.statuspage import CSRF_HEADER, SESSION_COOKIE
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    HUB_PASSWORD,
    TOKEN,
    apply_pending,
    attached,
    client,
    config,
    down,
    order,
    parts,
)

SECTIONS = ("overview", "buffer", "machines", "schedule", "approvals", "dead-letters", "agent")


def csrf_of(page: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


async def waiting_change(agent: Agent) -> int:
    """A release applied, then a revision inside the frozen horizon: it waits for a planner."""
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.release", 1, order("JO-1"))[1])
    await apply_pending(agent)
    soon = order("JO-1", revision=2, starts_in=timedelta(hours=1))
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.revision", 2, soon)[1])
    await apply_pending(agent)
    (row,) = await parts(agent).inbox.waiting_approval()
    return row.row_id


async def dead_letter(agent: Agent) -> int:
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, b"{not json, " + HUB_PASSWORD.encode())
    (letter,) = await parts(agent).inbox.dead_letters()
    return letter.id


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async with attached(config(tmp_path / "store.db")) as agent:
        yield agent


@pytest.fixture
async def page(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with client(agent) as page:
        yield page


async def test_the_page_renders_every_section_with_its_data(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    row_id = await waiting_change(agent)
    letter_id = await dead_letter(agent)
    agent.health["hub"].transition(LinkState.UP)
    answer = await page.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    for section in SECTIONS:
        assert f'id="{section}"' in answer.text
    assert 'data-link="hub" data-level="ok"' in answer.text
    assert 'data-link="plant"' in answer.text
    assert f'action="/status/approvals/{row_id}/approve"' in answer.text
    assert f'action="/status/dead-letters/{letter_id}/retry"' in answer.text
    assert 'data-order="JO-1"' in answer.text
    assert '<td class="correlation">plan-1</td>' in answer.text  # from the store
    assert "<svg" in answer.text
    assert "cafe12345678" in answer.text  # the config hash


async def test_the_fragment_carries_each_section_and_a_down_link_is_red(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    agent.health["hub"].transition(LinkState.BACKOFF, ConnectionRefusedError("refused"))
    answer = await page.get("/status/fragment")
    assert answer.status_code == 200
    sections = answer.json()["sections"]
    assert set(sections) == set(SECTIONS)
    assert 'data-link="hub" data-level="down"' in sections["overview"]
    assert "refused" in sections["overview"]


async def test_a_link_that_is_up_with_work_waiting_and_no_exchange_is_stalled(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    await dead_letter(agent)  # the outbox now holds the rejection for HQ
    hub = agent.health["hub"]
    hub.transition(LinkState.UP)
    hub.touch()
    five_minutes_later = hub.clock() + 300  # on the monotonic clock the stall is judged on
    hub.clock = lambda: five_minutes_later
    overview = (await page.get("/status/fragment")).json()["sections"]["overview"]
    assert 'data-link="hub" data-level="stalled"' in overview
    assert "nothing flows" in overview


async def test_a_link_that_lost_values_says_so_and_why(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    agent.health["plant"].transition(LinkState.UP)
    quiet = (await page.get("/status/fragment")).json()["sections"]["overview"]
    agent.health["plant"].counters = {"overflows": 7, "more_notifications": 40}
    lossy = (await page.get("/status/fragment")).json()["sections"]["overview"]

    assert "Data lost" not in quiet
    agent.health["hub"].peer = "mqtt://hub-2:1883 (MQTT 3.1.1)"
    with_peer = (await page.get("/status/fragment")).json()["sections"]["overview"]
    assert '<small class="peer">mqtt://hub-2:1883 (MQTT 3.1.1)</small>' in with_peer
    assert "Data lost: 7 values overflowed the server&#x27;s queues" in lossy
    assert "the server capped 40 messages" in lossy


async def test_every_url_in_the_page_and_its_assets_is_relative(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    await waiting_change(agent)
    await dead_letter(agent)
    text = (await page.get("/")).text
    urls = re.findall(r'(?:src|href|action)\s*=\s*"([^"]*)"', text)
    assert urls, "the page links its own assets"
    for url in urls:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
    assert not re.search(r"https?://", text.replace("http://www.w3.org/2000/svg", ""))
    for asset in ("/status/static/status.css", "/status/static/status.js"):
        served = await page.get(asset)
        assert served.status_code == 200
        assert not re.search(r"https?://|//[a-z]", served.text.replace("://", "")), asset
        assert "url(" not in served.text
        assert "@import" not in served.text
    assert (await page.get("/status/static/../api.py")).status_code == 404


async def test_posts_without_token_or_csrf_are_refused_and_change_nothing(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    row_id = await waiting_change(agent)
    letter_id = await dead_letter(agent)
    csrf = csrf_of((await page.get("/")).text)
    actions = [
        (f"/status/approvals/{row_id}/approve", None),
        (f"/status/approvals/{row_id}/reject", {"reason": "no"}),
        (f"/status/dead-letters/{letter_id}/retry", None),
        (f"/status/dead-letters/{letter_id}/discard", None),
    ]
    wrong = {"Authorization": "Bearer not-the-token-at-all-but-long"}
    for path, body in actions:
        for headers in ({}, {CSRF_HEADER: csrf}, AUTH, {**wrong, CSRF_HEADER: csrf}):
            answer = await page.post(path, json=body, headers=headers)
            assert answer.status_code in (401, 403), (path, headers, answer.status_code)
        forged = await page.post(path, json=body, headers={**AUTH, CSRF_HEADER: "forged"})
        assert forged.status_code == 403
    assert [r.row_id for r in await parts(agent).inbox.waiting_approval()] == [row_id]
    assert [d.id for d in await parts(agent).inbox.dead_letters()] == [letter_id]


async def test_login_sets_a_strict_http_only_cookie_and_the_form_approves(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    row_id = await waiting_change(agent)
    csrf = csrf_of((await page.get("/")).text)
    refused = await page.post("/status/login", json={"token": "wrong"}, headers={CSRF_HEADER: csrf})
    assert refused.status_code == 401
    no_csrf = await page.post("/status/login", json={"token": TOKEN})
    assert no_csrf.status_code == 403
    login = await page.post("/status/login", json={"token": TOKEN}, headers={CSRF_HEADER: csrf})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    assert SESSION_COOKIE in page.cookies
    without_csrf = await page.post(f"/status/approvals/{row_id}/approve")
    assert without_csrf.status_code == 403
    approved = await page.post(f"/status/approvals/{row_id}/approve", headers={CSRF_HEADER: csrf})
    assert approved.status_code == 200
    assert await parts(agent).inbox.waiting_approval() == []


async def test_dead_letters_are_discarded_through_the_page(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    letter_id = await dead_letter(agent)
    csrf = csrf_of((await page.get("/")).text)
    answer = await page.post(
        f"/status/dead-letters/{letter_id}/discard", headers={**AUTH, CSRF_HEADER: csrf}
    )
    assert answer.status_code == 200
    assert await parts(agent).inbox.dead_letters() == []


async def test_no_secret_appears_in_the_page_or_the_fragment(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    await waiting_change(agent)
    await dead_letter(agent)
    agent.health["hub"].transition(
        LinkState.BACKOFF, ConnectionRefusedError(f"bad password {HUB_PASSWORD}")
    )
    csrf = csrf_of((await page.get("/")).text)
    await page.post("/status/login", json={"token": TOKEN}, headers={CSRF_HEADER: csrf})
    for path in ("/", "/status/fragment", "/status/static/status.js"):
        text = (await page.get(path)).text
        assert TOKEN not in text, path
        assert HUB_PASSWORD not in text, path
    assert "**********" in (await page.get("/")).text


async def test_off_loopback_the_page_needs_a_login(tmp_path: Path) -> None:
    async with (
        attached(config(tmp_path / "store.db", host="0.0.0.0")) as agent,
        client(agent, host="10.0.0.5") as page,
    ):
        locked = await page.get("/")
        assert locked.status_code == 401
        assert 'id="login"' in locked.text
        assert 'id="overview"' not in locked.text
        assert (await page.get("/status/fragment")).status_code == 401
        csrf = csrf_of(locked.text)
        login = await page.post("/status/login", json={"token": TOKEN}, headers={CSRF_HEADER: csrf})
        assert login.status_code == 200
        opened = await page.get("/")
        assert opened.status_code == 200
        assert 'id="overview"' in opened.text
    async with (
        attached(config(tmp_path / "other.db", host="0.0.0.0")) as agent,
        client(agent, host="10.0.0.5") as bearer,
    ):
        assert (await bearer.get("/status/fragment", headers=AUTH)).status_code == 200


async def test_on_loopback_a_foreign_host_name_is_refused(agent: Agent) -> None:
    async with client(agent, host="rebound.example") as page:
        assert (await page.get("/")).status_code == 403
        assert (await page.get("/status/fragment")).status_code == 403


async def test_without_a_token_actions_are_off(tmp_path: Path) -> None:
    async with (
        attached(config(tmp_path / "store.db", token=None)) as agent,
        client(agent) as page,
    ):
        text = (await page.get("/")).text
        assert "actions are off" in text
        answer = await page.post(
            "/status/approvals/1/approve", headers={CSRF_HEADER: csrf_of(text)}
        )
        assert answer.status_code == 403


def test_the_depth_history_keeps_one_hour() -> None:
    history = DepthHistory()
    for i in range(1000):
        history.record({"business": i, "telemetry": 0}, at=float(i))
    assert len(history.samples) == 360
    assert history.samples[0].lanes["business"] == 640


def test_the_chart_draws_one_line_per_lane() -> None:
    now = time.time()
    samples = [
        DepthSample(now - 600 + i * 10, {"business": i, "telemetry": 2 * i}) for i in range(60)
    ]
    svg = depth_chart(samples, now)
    assert svg.count("<polyline") == 2
    assert ">business<" in svg
    assert ">telemetry<" in svg


def test_link_view_model_is_what_the_page_reads() -> None:
    assert {"state", "last_activity", "last_error", "since"} <= set(LinkView.model_fields)

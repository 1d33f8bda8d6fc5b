"""The schedule a page at a time, one order's timeline, the approval diff, the backlog banner,
the poll that carries only what changed: over a real SQLite store, through the agent's app."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.buffer.inbox import InboxStatus, OrderState
from plantsync.web.orders.paging import PAGE_SIZE
from plantsync.web.statuspage import changed_sections
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    apply_pending,
    attached,
    client,
    config,
    confirmation,
    down,
    order,
    parts,
)
from tests.statuspage.test_page import waiting_change


@pytest.fixture
async def agent(tmp_path: Path) -> AsyncIterator[Agent]:
    async with attached(config(tmp_path / "store.db")) as agent:
        yield agent


@pytest.fixture
async def page(agent: Agent) -> AsyncIterator[httpx.AsyncClient]:
    async with client(agent) as page:
        yield page


async def many_orders(agent: Agent, count: int) -> None:
    """``count`` orders applied at once, over three work centers, one Held of every ten."""
    store = parts(agent)
    await store.inbox.receive("bulk", DOWN_TOPIC, b"{}", received_at=time.time(), seq=None)
    (row,) = await store.inbox.pending(1)
    states = []
    for number in range(count):
        body = order(f"JO-{number:04d}", starts_in=timedelta(hours=number + 1))
        body["work_center"] = f"line-{number % 3 + 1}"
        states.append(
            OrderState(
                body["order_id"],
                1,
                body["work_center"],
                "Held" if number % 10 == 0 else "Released",
                httpx.Response(200, json=body).content,
                time.time(),
                body["planned_start"],
            )
        )
    await store.inbox.settle(row.row_id, InboxStatus.APPLIED, orders=states)


async def test_the_schedule_is_paged_filtered_and_searched_on_the_server(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    await many_orders(agent, 240)

    first = (await page.get("/api/v1/orders")).json()
    assert (first["total"], first["matching"], len(first["orders"])) == (240, 240, PAGE_SIZE)
    assert first["orders"][0]["order_id"] == "JO-0000"  # the earliest planned start first
    second = (await page.get("/api/v1/orders", params={"page": 2})).json()
    assert second["orders"][0]["order_id"] == f"JO-{PAGE_SIZE:04d}"
    held = (await page.get("/api/v1/orders", params={"state": "Held"})).json()
    assert held["matching"] == 24
    assert {o["status"] for o in held["orders"]} == {"Held"}
    line = (await page.get("/api/v1/orders", params={"work_center": "line-2"})).json()
    assert line["matching"] == 80
    assert line["work_centers"] == {"line-1": 80, "line-2": 80, "line-3": 80}
    found = (await page.get("/api/v1/orders", params={"q": "jo-012"})).json()
    assert [o["order_id"] for o in found["orders"]] == [f"JO-012{n}" for n in range(10)]
    wildcard = (await page.get("/api/v1/orders", params={"q": "%"})).json()
    assert wildcard["matching"] == 0  # a LIKE wildcard is searched for literally

    html = (await page.get("/", params={"q": "JO-0123"})).text
    assert 'data-matching="1"' in html
    assert 'href="/status/orders/JO-0123"' in html  # search leads to the order's timeline
    assert html.count('<tr data-order="') == 1
    whole = (await page.get("/")).text
    assert whole.count('<tr data-order="') == PAGE_SIZE
    assert 'rel="next" href="/?page=2"' in whole


async def test_an_order_timeline_follows_it_from_release_through_approval_to_confirmation(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    row_id = await waiting_change(agent)  # JO-1 released and applied; revision 2 waits
    approved = await page.post(f"/api/v1/approvals/{row_id}/approve", headers=AUTH)
    assert approved.status_code == 200
    await apply_pending(agent)
    posted = await page.post(
        "/api/v1/confirmations", json=confirmation("JO-1", revision=2), headers=AUTH
    )
    assert posted.status_code == 202

    answer = await page.get("/api/v1/orders/JO-1/timeline")
    assert answer.status_code == 200
    timeline = answer.json()
    assert timeline["order"]["revision"] == 2
    received = [e for e in timeline["events"] if e["kind"] == "schedule"]
    assert [(e["type"], e["revision"], e["summary"]) for e in received] == [
        ("schedule.release", 1, "applied"),
        ("schedule.revision", 2, "applied"),
    ]
    assert all(e["settled_at"] for e in received)
    acks = [e["summary"].split(" for ")[0] for e in timeline["events"] if e["kind"] == "ack"]
    assert acks == [
        "ack accepted",
        "ack applied",
        "ack accepted",
        "ack waiting-for-approval",
        "ack applied",
    ]
    (confirmed,) = [e for e in timeline["events"] if e["kind"] == "confirmation"]
    assert confirmed["delivery"] == "queued"  # no hub: it waits in the outbox
    assert confirmed["revision"] == 2
    assert "95 pcs good" in confirmed["summary"]

    html = await page.get("/status/orders/JO-1")
    assert html.status_code == 200
    assert html.text.count('data-kind="ack"') == 5
    assert 'data-kind="confirmation"' in html.text
    assert (await page.get("/api/v1/orders/JO-404/timeline")).status_code == 404
    assert (await page.get("/status/orders/JO-404")).status_code == 404


async def test_an_approval_card_shows_each_field_old_and_new_and_the_rule_that_held_it(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    await waiting_change(agent)  # revision 2 moves the start into the frozen horizon
    approvals = (await page.get("/status/fragment")).json()["sections"]["approvals"]
    assert 'data-field="planned_start"' in approvals
    assert 'data-field="revision"' in approvals
    assert 'class="old">1</td>' in approvals
    assert 'class="new">2</td>' in approvals
    assert "rule: frozen horizon" in approvals
    assert 'data-field="product_id"' not in approvals  # unchanged fields are not listed


def test_a_poll_answers_304_when_no_section_changed_and_else_only_the_changed_ones() -> None:
    sections = {"overview": "<p>a</p>", "schedule": "<table>…</table>"}
    first = changed_sections(sections, False, "")
    etag = first.headers["etag"]
    assert first.status_code == 200
    assert changed_sections(sections, False, etag).status_code == 304
    assert changed_sections(sections, False, f"W/{etag}").status_code == 304
    moved = changed_sections({**sections, "overview": "<p>b</p>"}, False, etag)
    assert json.loads(bytes(moved.body))["sections"] == {"overview": "<p>b</p>"}


async def test_a_poll_after_a_schedule_change_carries_the_schedule_but_not_the_quiet_sections(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    first = await page.get("/status/fragment")
    etag = first.headers["etag"]
    quiet = await page.get("/status/fragment", headers={"If-None-Match": etag})
    # Durations on the page tick by the second: overview, buffer or agent may have moved.
    moving = {"overview", "buffer", "agent"}
    assert quiet.status_code == 304 or set(quiet.json()["sections"]) <= moving
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, down("schedule.release", 1, order("JO-9"))[1])
    await apply_pending(agent)
    changed = await page.get("/status/fragment", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    sections = set(changed.json()["sections"])
    assert "schedule" in sections
    assert sections <= {"schedule", *moving}


async def test_the_banner_weighs_backlog_in_both_directions(
    agent: Agent, page: httpx.AsyncClient
) -> None:
    from plantsync.agent.supervisor import LinkState

    for link in agent.health.values():
        link.transition(LinkState.UP)
    calm = (await page.get("/status/fragment")).json()["sections"]["overview"]
    assert 'data-verdict="ok"' in calm
    store = parts(agent)
    long_ago = time.time() - 900  # a schedule message that has waited 15 minutes
    await store.inbox.receive("old-one", DOWN_TOPIC, b"{}", received_at=long_ago, seq=None)
    waits = (await page.get("/status/fragment")).json()["sections"]["overview"]
    assert 'data-verdict="stalled"' in waits
    assert 'data-backlog="down"' in waits
    assert "arrived 15 min ago" in waits


async def test_the_page_has_a_favicon(page: httpx.AsyncClient) -> None:
    icon = await page.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert 'href="/status/static/favicon.svg"' in (await page.get("/")).text
    assert (await page.get("/status/static/favicon.svg")).status_code == 200


def test_a_link_time_in_state_is_not_reset_when_it_reports_the_same_state_again() -> None:
    from plantsync.agent.supervisor import LinkHealth, LinkState

    now = [100.0]
    plant = LinkHealth("plant", clock=lambda: now[0])
    plant.transition(LinkState.UP)
    now[0] = 400.0
    plant.transition(LinkState.UP)  # every apply reports UP again
    assert plant.seconds_in_state() == 300.0
    plant.transition(LinkState.BACKOFF, ConnectionRefusedError("refused"))
    assert plant.seconds_in_state() == 0.0


async def test_a_bad_date_filter_is_a_422_naming_it_and_an_empty_one_is_no_filter(
    page: httpx.AsyncClient,
) -> None:
    bad = await page.get("/api/v1/orders", params={"from": "tomorrow"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "from"]
    empty = await page.get("/api/v1/orders", params={"from": "", "to": "", "state": ""})
    assert empty.status_code == 200

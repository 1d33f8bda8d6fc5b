"""Who may call what: reads open on loopback only, every POST behind the token, no secret in
any answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    HUB_PASSWORD,
    TOKEN,
    attached,
    business_messages,
    client,
    config,
    confirmation,
    down,
    order,
    parts,
)

READS = [
    "/api/v1/schedule",
    "/api/v1/schedule?work_center=line-1",
    "/api/v1/orders/JO-1",
    "/api/v1/approvals",
    "/api/v1/dead-letters",
    "/api/v1/status",
    "/openapi.json",
]
WRITES: list[tuple[str, dict[str, object] | None]] = [
    ("/api/v1/confirmations", confirmation()),
    (
        "/api/v1/order-status",
        {
            "order_id": "JO-1",
            "revision": 1,
            "state": "Running",
            "changed_at": "2026-11-25T06:00:00Z",
        },
    ),
    ("/api/v1/approvals/1/approve", None),
    ("/api/v1/approvals/1/reject", {"reason": "no"}),
    ("/api/v1/dead-letters/1/retry", None),
    ("/api/v1/dead-letters/1/discard", None),
]
WRONG = {"Authorization": "Bearer not-the-token-at-all-but-long"}


@pytest.fixture
async def off_loopback(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API as configured for 0.0.0.0 (with a token, as the config requires)."""
    off = config(tmp_path / "store.db", host="0.0.0.0")
    async with attached(off) as agent, client(agent, host="plant-server.local") as api:
        yield api


@pytest.fixture
async def tokenless(tmp_path: Path) -> AsyncIterator[tuple[Agent, httpx.AsyncClient]]:
    async with attached(config(tmp_path / "store.db", token=None)) as agent, client(agent) as api:
        yield agent, api


async def _state(agent: Agent) -> tuple[int, int, int]:
    store = parts(agent)
    return (
        (await store.outbox.stats()).depth,
        len(await store.inbox.waiting_approval()),
        await store.inbox.dead_letter_count(),
    )


@pytest.mark.parametrize("path", READS)
async def test_reads_are_open_on_loopback(api: httpx.AsyncClient, path: str) -> None:
    answer = await api.get(path)

    assert answer.status_code in (200, 404)  # 404: the order does not exist, yet allowed


@pytest.mark.parametrize("path", READS)
async def test_off_loopback_every_read_needs_the_token(
    off_loopback: httpx.AsyncClient, path: str
) -> None:
    without = await off_loopback.get(path)
    wrong = await off_loopback.get(path, headers=WRONG)
    basic = await off_loopback.get(path, headers={"Authorization": f"Basic {TOKEN}"})
    right = await off_loopback.get(path, headers=AUTH)

    assert [without.status_code, wrong.status_code, basic.status_code] == [401, 401, 401]
    assert without.headers["WWW-Authenticate"] == "Bearer"
    assert right.status_code in (200, 404)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probes_are_open_everywhere(off_loopback: httpx.AsyncClient, path: str) -> None:
    assert (await off_loopback.get(path)).status_code == 200


async def test_on_loopback_a_foreign_host_name_is_refused(agent: Agent) -> None:
    # A page that rebinds its own name to 127.0.0.1 must not read the schedule.
    async with client(agent, host="attacker.example") as api:
        answer = await api.get("/api/v1/schedule")

    assert answer.status_code == 403
    assert "loopback" in answer.json()["detail"]


@pytest.mark.parametrize(("path", "body"), WRITES)
async def test_every_post_without_the_right_token_is_401_and_changes_nothing(
    agent: Agent, api: httpx.AsyncClient, path: str, body: dict[str, object] | None
) -> None:
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, b"{not json")
    before = await _state(agent)

    without = await api.post(path, json=body)
    wrong = await api.post(path, json=body, headers=WRONG)

    assert [without.status_code, wrong.status_code] == [401, 401]
    assert await _state(agent) == before


@pytest.mark.parametrize(("path", "body"), WRITES)
async def test_without_a_configured_token_every_post_is_refused_naming_the_setting(
    tokenless: tuple[Agent, httpx.AsyncClient], path: str, body: dict[str, object] | None
) -> None:
    agent, api = tokenless
    before = await _state(agent)

    answer = await api.post(path, json=body, headers=AUTH)

    assert answer.status_code == 403
    assert "set api.token" in answer.json()["detail"]
    assert await _state(agent) == before


async def test_reads_stay_open_without_a_configured_token(
    tokenless: tuple[Agent, httpx.AsyncClient],
) -> None:
    _, api = tokenless

    assert (await api.get("/api/v1/status")).status_code == 200


async def test_no_answer_carries_the_token_or_the_hub_password(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    # A link error that quotes a secret (a peer echoing it) must be scrubbed too.
    agent.health["hub"].transition(
        LinkState.BACKOFF, ConnectionError(f"refused user plant-01 with {HUB_PASSWORD}")
    )
    _, payload = down("schedule.release", 1, order("JO-1"))
    await agent.downlink.receive(DOWN_TOPIC, payload)
    await agent.downlink.receive(DOWN_TOPIC, f'{{"leak": "{HUB_PASSWORD}"'.encode())
    answers = [await api.get(path) for path in [*READS, "/healthz", "/readyz"]]
    answers += [await api.get(path, headers=AUTH) for path in READS]
    for path, body in WRITES:
        answers.append(await api.post(path, json=body))
        answers.append(await api.post(path, json=body, headers=AUTH))
        answers.append(await api.post(path, content=TOKEN.encode(), headers=AUTH))

    assert len(answers) == 2 * len(READS) + 2 + 3 * len(WRITES)
    assert any(a.status_code == 202 for a in answers)
    for answer in answers:
        assert TOKEN not in answer.text, answer.request.url
        assert HUB_PASSWORD not in answer.text, answer.request.url
    status = next(a for a in answers if a.request.url.path == "/api/v1/status")
    assert "**********" in status.json()["links"]["hub"]["last_error"]
    assert await business_messages(agent)

"""Logs: one correlation id from a schedule through its acks to its confirmations, and no
configured secret in any log line or API answer."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from plantsync.agent.logs import MASK, setup_logging
from plantsync.agent.service import Agent
from plantsync.config.model import HubConfig
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    HUB_PASSWORD,
    TOKEN,
    apply_pending,
    attached,
    business_messages,
    client,
    config,
    confirmation,
    down,
    order,
)
from tests.e2e.support import FAST_RECONNECT, eventually, running_agent
from tests.fixtures.opcua import free_port

SECRETS = (HUB_PASSWORD, TOKEN)


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every log line of the test, as the agent writes them, in a buffer."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = saved
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_a_schedule_its_acks_and_its_confirmation_share_one_correlation_id(
    agent: Agent, api: httpx.AsyncClient, captured: io.StringIO
) -> None:
    setup_logging("info", "json", config=agent.config, stream=captured)
    assert agent.downlink is not None
    message_id, payload = down("schedule.release", 1, order("JO-1"))

    await agent.downlink.receive(DOWN_TOPIC, payload)
    await apply_pending(agent)
    answer = await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation("JO-1"))

    assert answer.status_code == 202
    about = [line for line in _lines(captured) if message_id in line["message"]]
    assert [line["message"].split(": ")[-1] for line in about][-1] == "applied"
    assert any("received" in line["message"] for line in about)
    assert {line.get("correlation_id") for line in about} == {"plan-1"}
    [committed] = [line for line in _lines(captured) if line["message"].startswith("confirmation")]
    assert committed["correlation_id"] == "plan-1"
    messages = await business_messages(agent)
    assert {m["correlation_id"] for m in messages} == {"plan-1"}  # acks and the confirmation


async def test_a_confirmation_of_an_unknown_order_carries_the_requests_correlation_id(
    agent: Agent, api: httpx.AsyncClient, captured: io.StringIO
) -> None:
    setup_logging("info", "plain", config=agent.config, stream=captured)
    headers = {**AUTH, "X-Correlation-Id": "mes-batch-77"}

    answer = await api.post("/api/v1/confirmations", headers=headers, json=confirmation("JO-9"))

    assert answer.status_code == 202
    [message] = await business_messages(agent)
    assert message["correlation_id"] == "mes-batch-77"
    assert "[correlation_id=mes-batch-77]" in captured.getvalue()


async def test_a_dead_letter_is_logged_with_its_correlation_id(
    agent: Agent, captured: io.StringIO
) -> None:
    setup_logging("info", "json", config=agent.config, stream=captured)
    assert agent.downlink is not None
    bad = json.dumps({"id": "m-1", "correlation_id": "plan-bad", "type": "nonsense"}).encode()

    await agent.downlink.receive(DOWN_TOPIC, bad)

    [line] = [line for line in _lines(captured) if "dead letter" in line["message"]]
    assert line["correlation_id"] == "plan-bad"


def test_every_configured_secret_is_masked_in_messages_and_exceptions(
    tmp_path: Path, captured: io.StringIO
) -> None:
    setup_logging("debug", "json", config=config(tmp_path / "s.db"), stream=captured)
    log = logging.getLogger("plantsync.test")

    log.warning("connect to mqtt://plant-01:%s@hub failed", HUB_PASSWORD)
    try:
        raise ConnectionError(f"refused with Bearer {TOKEN}")
    except ConnectionError:
        log.exception("request failed")

    text = captured.getvalue()
    assert all(secret not in text for secret in SECRETS)
    assert text.count(MASK) >= 2


@pytest.mark.slow
async def test_no_secret_appears_in_any_log_line_of_a_run_with_a_failing_hub(
    tmp_path: Path, captured: io.StringIO
) -> None:
    unreachable = HubConfig(
        url=f"mqtt://127.0.0.1:{free_port()}",
        username="plant-01",
        password=SecretStr(HUB_PASSWORD),
        connect_timeout=timedelta(seconds=1),
    )
    agent_config = config(tmp_path / "s.db").model_copy(
        update={"hub": unreachable, "reconnect": FAST_RECONNECT}
    )
    setup_logging("debug", "plain", config=agent_config, stream=captured)

    async with running_agent(agent_config) as agent:
        await eventually(lambda: agent.health["hub"].failures >= 3, within=20)
        assert agent.api_port is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
            answers = [await api.get(path) for path in _READS]

    text = captured.getvalue()
    assert "link hub backoff" in text
    assert all(secret not in text for secret in SECRETS)
    for answer in answers:
        assert all(secret not in answer.text for secret in SECRETS), answer.url


_READS = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/api/v1/status",
    "/api/v1/schedule",
    "/api/v1/approvals",
    "/api/v1/dead-letters",
)


async def test_no_api_answer_carries_a_secret_even_when_errors_and_payloads_hold_one(
    tmp_path: Path,
) -> None:
    async with attached(config(tmp_path / "s.db")) as agent, client(agent) as api:
        assert agent.downlink is not None
        agent.health["hub"].last_error = f"not authorized: password {HUB_PASSWORD}"
        await agent.downlink.receive(DOWN_TOPIC, f"{{bad {TOKEN}".encode())
        answers = [await api.get(path) for path in _READS]

    assert [answer.status_code for answer in answers if answer.status_code != 200] == []
    for answer in answers:
        assert all(secret not in answer.text for secret in SECRETS), answer.url

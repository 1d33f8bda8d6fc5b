"""The operator commands against a running agent and a real store."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, HubConfig
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.tools.cli import main
from tests.api.support import DOWN_TOPIC, SITE, TOKEN, config, confirmation
from tests.e2e.support import FAST_RECONNECT, eventually, running_agent
from tests.fixtures.opcua import free_port

TOKEN_ENV = "PLANTSYNC_TEST_API_TOKEN"  # noqa: S105 - a variable's name


def agent_config(tmp_path: Path) -> AgentConfig:
    """No broker: the hub link keeps failing, which is what a status should show."""
    hub = HubConfig(url=f"mqtt://127.0.0.1:{free_port()}", connect_timeout=timedelta(seconds=1))
    return config(tmp_path / "store.db").model_copy(
        update={"hub": hub, "reconnect": FAST_RECONNECT}
    )


@contextlib.asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[tuple[Agent, str]]:
    async with running_agent(agent_config(tmp_path)) as agent:
        await eventually(lambda: agent.api_port is not None and agent.downlink is not None, 10)
        yield agent, f"http://127.0.0.1:{agent.api_port}"


async def cli(*argv: str) -> int:
    """``plantsync …`` in a thread: it blocks on HTTP the agent answers on this loop."""
    return await asyncio.to_thread(main, list(argv))


async def test_status_prints_links_outbox_inbox_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serving(tmp_path) as (agent, url):
        await eventually(lambda: agent.health["hub"].failures >= 1, within=10)
        code = await cli("status", "--url", url)

    out = capsys.readouterr().out
    assert code == 0
    assert f"site {SITE}" in out
    assert "hub" in out
    assert "backoff" in out or "connecting" in out
    assert "outbox: " in out
    assert "business" in out
    assert "telemetry" in out
    assert "dead letters: 0" in out


async def test_status_of_an_agent_that_does_not_answer_is_one_line_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = await cli("status", "--url", f"http://127.0.0.1:{free_port()}")

    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "not reachable" in captured.err
    assert len(captured.err.strip().splitlines()) == 1


async def test_deadletter_list_retry_and_discard_through_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    async with serving(tmp_path) as (agent, url):
        assert agent.downlink is not None
        await agent.downlink.receive(DOWN_TOPIC, b"{not json")
        await agent.downlink.receive(DOWN_TOPIC, b"{still not json")
        listed = await cli("deadletter", "list", "--url", url)
        listing = capsys.readouterr().out
        retried = await cli("deadletter", "retry", "1", "--url", url, "--token-env", TOKEN_ENV)
        retry_out = capsys.readouterr().out
        discarded = await cli("deadletter", "discard", "2", "--url", url, "--token-env", TOKEN_ENV)
        discard_out = capsys.readouterr().out
        unauthorized = await cli("deadletter", "discard", "3", "--url", url, "--token-env", "NONE")
        refused = capsys.readouterr().err
        assert agent.store is not None
        remaining = [letter.id for letter in await agent.store.inbox.dead_letters()]

    assert [listed, retried, discarded, unauthorized] == [0, 0, 0, 1]
    assert "invalid-json" in listing or "json" in listing
    assert len([line for line in listing.splitlines() if line.strip()]) == 4
    assert "refused again" in retry_out
    assert "dead letter 2 discarded" in discard_out
    assert "HTTP 401" in refused
    assert remaining == [3]  # 1 retried (and replaced by 3), 2 discarded


async def test_buffer_inspect_reads_the_store_of_a_running_agent_without_writing_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "agent.toml"
    async with serving(tmp_path) as (agent, _):
        assert agent.business is not None
        for number in range(3):
            body = confirmation(f"JO-{number}")
            await agent.business.confirmation(_confirmation(body), source="test")
        config_file.write_text(
            f'[site]\nid = "{SITE}"\n[hub]\nurl = "mqtt://127.0.0.1:1"\n'
            f'[store]\npath = "{agent.config.store.path}"\n'
        )
        store = agent.config.store.path
        before = store.stat().st_mtime_ns
        code = await cli("buffer", "inspect", "--config", str(config_file))
        after = store.stat().st_mtime_ns

    out = capsys.readouterr().out
    assert code == 0
    assert "outbox: 3 messages" in out
    assert "business" in out
    assert "order/JO-0" in out
    assert "last seq        1" in out
    assert before == after


def _confirmation(body: dict[str, object]) -> ProductionConfirmation:
    return ProductionConfirmation.model_validate(body)

"""``plantsync buffer replay`` beside a running agent: HQ receives the archived messages again,
with the same ids, marked historical."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from plantsync.agent.service import Agent
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.tools.cli import main
from plantsync.tools.localbroker import Mosquitto
from tests.api.support import confirmation
from tests.e2e.support import eventually, recording, running_agent
from tests.metrics.test_metrics_links import link_config

pytestmark = pytest.mark.slow


async def test_replay_sends_archived_messages_again_as_historical_with_their_ids(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = link_config(tmp_path / "store.db", broker)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[site]\nid = "{config.site.id}"\n[hub]\nurl = "{broker.url}"\n'
        f'[store]\npath = "{config.store.path}"\n'
    )
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.business is not None, within=20)
        assert agent.business is not None
        ids = [
            (
                await agent.business.confirmation(
                    ProductionConfirmation.model_validate(confirmation(f"JO-{n}")), source="test"
                )
            ).message_id
            for n in range(3)
        ]
        await hub.wait_for(lambda: _received(hub.business, ids) == 3, within=20)
        # HQ has them; the rows are deleted (and archived) in batches a little later.
        await eventually(lambda: _all_acked(agent), within=20)

        code = await asyncio.to_thread(
            main, ["buffer", "replay", "--config", str(config_file), "--since", "1h"]
        )
        await hub.wait_for(lambda: _received(hub.business, ids, historical=True) == 3, within=20)

    captured = capsys.readouterr()
    assert code == 0
    assert "\r[" in captured.err
    # the three confirmations and the agent's resync request (it had no session) were archived
    assert re.search(r"\] (\d+)/\1$", captured.err.rstrip())
    assert "queued again as historical" in captured.out
    again = [m for m in hub.business if m["id"] in ids and m.get("historical")]
    first = {m["id"]: m for m in hub.business if m["id"] in ids and not m.get("historical")}
    assert sorted(m["id"] for m in again) == sorted(ids)
    assert all(m["seq"] == first[m["id"]]["seq"] for m in again)
    assert all(m["payload"] == first[m["id"]]["payload"] for m in again)


def _received(messages: list[dict[str, object]], ids: list[str], historical: bool = False) -> int:
    return sum(1 for m in messages if m["id"] in ids and bool(m.get("historical")) is historical)


def _all_acked(agent: Agent) -> bool:
    """Every row published so far is acknowledged and deleted (so archived)."""
    counters = agent.uplink.counters if agent.uplink is not None else None
    return counters is not None and counters.acked + counters.requeued >= counters.published

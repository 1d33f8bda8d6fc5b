"""``plantsync order ORDER_ID``: one order's life, read from the store while the agent holds it
open, the same events as the API's timeline."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from plantsync.tools.cli import main
from tests.api.support import (
    AUTH,
    SITE,
    apply_pending,
    attached,
    client,
    config,
    confirmation,
)
from tests.statuspage.test_page import waiting_change


def config_file(tmp_path: Path, store: Path) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(
        f'[site]\nid = "{SITE}"\n[hub]\nurl = "mqtt://127.0.0.1:1"\n[store]\npath = "{store}"\n'
    )
    return path


async def test_order_prints_the_timeline_the_api_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = config(tmp_path / "store.db")
    async with attached(settings) as agent, client(agent) as api:
        row_id = await waiting_change(agent)
        await api.post(f"/api/v1/approvals/{row_id}/approve", headers=AUTH)
        await apply_pending(agent)
        await api.post("/api/v1/confirmations", json=confirmation("JO-1", revision=2), headers=AUTH)
        from_api = (await api.get("/api/v1/orders/JO-1/timeline")).json()
        path = config_file(tmp_path, settings.store.path)
        text_code = await asyncio.to_thread(main, ["order", "JO-1", "--config", str(path)])
        text = capsys.readouterr().out
        json_code = await asyncio.to_thread(
            main, ["order", "JO-1", "--config", str(path), "--json"]
        )
        as_json = json.loads(capsys.readouterr().out)
        missing = await asyncio.to_thread(main, ["order", "JO-404", "--config", str(path)])

    assert (text_code, json_code, missing) == (0, 0, 1)
    assert as_json == from_api
    assert text.startswith("order JO-1: revision 2, Released, work center line-1")
    assert text.count("HQ -> plant") == 2
    assert "ack waiting-for-approval" in text
    assert "confirmation JO-1-c1: 95 pcs good, 5 pcs scrap, final" in text
    assert "[queued]" in text  # no hub: the confirmation waits in the outbox
    assert "nothing about 'JO-404'" in capsys.readouterr().err

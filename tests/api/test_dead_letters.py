"""Dead letters over the API: listed, retried (parsed again), discarded."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
from pydantic import ByteSize

from plantsync.agent.service import Agent
from plantsync.config.model import ScheduleConfig
from tests.api.support import (
    AUTH,
    DOWN_TOPIC,
    attached,
    business_messages,
    client,
    config,
    down,
    order,
    parts,
)


async def _dead_letter(agent: Agent, payload: bytes) -> int:
    assert agent.downlink is not None
    await agent.downlink.receive(DOWN_TOPIC, payload)
    [letter] = await parts(agent).inbox.dead_letters(1)
    return letter.id


async def test_dead_letters_are_listed_newest_first_with_reason_and_a_preview(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    first = await _dead_letter(agent, b"{not json")
    second = await _dead_letter(agent, b"\xff\xfe binary")

    letters = (await api.get("/api/v1/dead-letters")).json()
    limited = (await api.get("/api/v1/dead-letters", params={"limit": 1})).json()

    assert [letter["id"] for letter in letters] == [second, first]
    assert [letter["id"] for letter in limited] == [second]
    assert letters[1]["reason_code"] == "malformed-json"
    assert letters[1]["topic"] == DOWN_TOPIC
    assert letters[1]["payload_preview"] == "{not json"
    assert letters[1]["size_bytes"] == 9
    assert letters[0]["payload_preview"].endswith(" binary")


async def test_a_retried_dead_letter_that_is_still_bad_is_refused_again_and_replaced(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    letter_id = await _dead_letter(agent, b"{not json")

    answer = await api.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=AUTH)

    assert answer.status_code == 200
    assert answer.json()["outcome"] == "dead-letter"
    assert "malformed-json" in answer.json()["reason"]
    [letter] = await parts(agent).inbox.dead_letters()
    assert letter.id != letter_id
    assert letter.payload == b"{not json"
    rejections = [m for m in await business_messages(agent) if m["type"] == "schedule.ack"]
    assert [m["payload"]["outcome"] for m in rejections] == ["rejected", "rejected"]


async def test_a_dead_letter_that_a_new_config_accepts_is_received_on_retry(
    tmp_path: Path,
) -> None:
    strict = config(tmp_path / "store.db")
    strict = strict.model_copy(update={"schedule": ScheduleConfig(max_message_size=ByteSize(100))})
    message_id, payload = down("schedule.release", 1, order("JO-1"))
    async with attached(strict) as agent:
        letter_id = await _dead_letter(agent, payload)
    async with attached(config(tmp_path / "store.db")) as agent, client(agent) as api:
        answer = await api.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=AUTH)

        assert answer.json() == {"dead_letter_id": letter_id, "outcome": "received", "reason": None}
        assert await parts(agent).inbox.dead_letter_count() == 0
        [row] = await parts(agent).inbox.pending(10)
        assert row.message_id == message_id
        acks = [m["payload"] for m in await business_messages(agent)]
        assert [(a["original_id"], a["outcome"]) for a in acks] == [
            (message_id, "rejected"),
            (message_id, "accepted"),
        ]


async def test_a_discarded_dead_letter_is_gone(agent: Agent, api: httpx.AsyncClient) -> None:
    letter_id = await _dead_letter(agent, b"{not json")

    first = await api.post(f"/api/v1/dead-letters/{letter_id}/discard", headers=AUTH)
    second = await api.post(f"/api/v1/dead-letters/{letter_id}/discard", headers=AUTH)
    retry = await api.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=AUTH)

    assert first.status_code == 200
    assert [second.status_code, retry.status_code] == [404, 404]
    assert (await api.get("/api/v1/dead-letters")).json() == []


async def test_a_dead_letter_kept_in_part_shows_its_whole_size_and_cannot_be_retried(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    payload = b'{"id": "big-1", "padding": "' + b"x" * (300 * 1024) + b'"}'
    letter_id = await _dead_letter(agent, payload)

    [letter] = (await api.get("/api/v1/dead-letters")).json()
    retried = await api.post(f"/api/v1/dead-letters/{letter_id}/retry", headers=AUTH)
    status = (await api.get("/api/v1/status")).json()

    assert letter["reason_code"] == "oversized"
    assert (letter["size_bytes"], letter["kept_bytes"]) == (len(payload), 64 * 1024)
    assert letter["sha256"] == hashlib.sha256(payload).hexdigest()
    assert retried.status_code == 409
    assert f"first {64 * 1024} of the message's {len(payload)} bytes" in retried.json()["detail"]
    assert status["outbox"]["dead_letter_bytes"] > 64 * 1024
    assert status["outbox"]["size_bytes"] > status["outbox"]["dead_letter_bytes"]  # + the ack

"""One strict JSON reader on every way in: duplicate keys, NaN/Infinity, invalid UTF-8 and
nesting beyond the contract are refused with a reason, on the down topic (through a real
Mosquitto) and on the local API (through the real server) alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plantsync.contracts.inbound import MAX_JSON_DEPTH, payload_fingerprint
from plantsync.tools.localbroker import Mosquitto
from tests.api.support import AUTH, business_messages, config, confirmation
from tests.e2e.hq import Hq, acks, order
from tests.e2e.support import eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.hostile.support import served

pytestmark = pytest.mark.slow


def _hostile(document: bytes) -> dict[str, tuple[bytes, str]]:
    """Each hostile form of a valid ``document`` (a JSON object whose first key is "id"...),
    with the words its rejection must carry."""
    inner = document[1:]
    deep = b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)
    return {
        "duplicate key": (b'{"quantity_note": "a", "quantity_note": "b", ' + inner, "duplicate"),
        "NaN": (b'{"reject_me": NaN, ' + inner, "not JSON"),
        "Infinity": (b'{"reject_me": -Infinity, ' + inner, "not JSON"),
        "invalid UTF-8": (b'{"reject_me": "\xff\xfe", ' + inner, "not JSON"),
        "too deep": (b'{"reject_me": ' + deep + b", " + inner, "nested deeper"),
    }


@pytest.mark.parametrize("case", list(_hostile(b"{}")))
async def test_the_api_refuses_hostile_json_with_the_reason(case: str, tmp_path: Path) -> None:
    body, words = _hostile(json.dumps(confirmation()).encode())[case]
    headers = {**AUTH, "Content-Type": "application/json"}
    async with served(config(tmp_path / "store.db")) as (agent, api):
        answer = await api.post("/api/v1/confirmations", content=body, headers=headers)
        stored = await business_messages(agent)

    assert answer.status_code == 422
    assert words in answer.json()["detail"][0]["msg"]
    assert stored == []


async def test_the_down_topic_refuses_hostile_json_with_the_reason(
    broker: Mosquitto, tmp_path: Path
) -> None:
    hq = Hq(broker.url)
    config = business_config(tmp_path / "store.db", broker, None)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        sent = {}
        for number, case in enumerate(_hostile(b"{}")):
            message = hq.message("schedule.release", {"orders": [order(f"JO-{number}")]})
            body, words = _hostile(json.dumps(message).encode())[case]
            # No id can be read from bytes that are not accepted JSON: the hash names them.
            sent[case] = (payload_fingerprint(body), words)
            await hq.publish(body)
        await hub.wait_for(lambda: all(acks(hub, i) for i, _ in sent.values()), within=30)

    for case, (message_id, words) in sent.items():
        (ack,) = acks(hub, message_id)
        assert ack["outcome"] == "rejected", case
        assert ack["reason_code"] == "malformed-json", case
        assert words in ack["reason"], case

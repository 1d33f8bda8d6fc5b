"""``hub tail``: one readable line per message, whatever arrives."""

from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

from plantsync.config.model import HubConfig
from plantsync.drivers.mqtt import HubConnection
from plantsync.tools.hublines import describe, format_message
from plantsync.tools.hubtools import tail
from plantsync.tools.localbroker import Mosquitto

STATE: dict[str, Any] = {
    "id": "0193a1c2-0000-7000-8000-000000000000",
    "type": "machine.state",
    "schema_version": 1,
    "site": "plant-01",
    "source": "opcua:line-1",
    "stream": "machine/press-1",
    "seq": 42,
    "event_time": "2026-01-01T12:03:04.512Z",
    "historical": False,
    "correlation_id": None,
    "payload": {
        "machine_id": "press-1",
        "kind": "change",
        "values": [
            {"tag": "speed", "value": 12.5, "quality": "good"},
            {"tag": "state", "value": "Executing", "quality": "good"},
        ],
    },
}
STATE_TOPIC = "plantsync/v1/plant-01/up/machine/press-1/state"


def test_a_machine_state_envelope_reads_as_site_type_stream_seq_and_tag_values() -> None:
    line = describe(STATE_TOPIC, json.dumps(STATE).encode())
    assert line == "plant-01 machine.state machine/press-1 #42 speed=12.5 state=Executing"


def test_format_message_starts_with_the_local_time_to_the_millisecond() -> None:
    line = format_message(STATE_TOPIC, json.dumps(STATE).encode())
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} plant-01 machine\.state .*", line)


def test_historical_and_snapshot_messages_say_so() -> None:
    snapshot = {**STATE, "historical": True, "payload": {**STATE["payload"], "kind": "snapshot"}}
    line = describe(STATE_TOPIC, json.dumps(snapshot).encode())
    assert "(historical) kind=snapshot speed=12.5" in line


def test_the_site_status_shows_state_version_and_reason() -> None:
    status = {
        "type": "site.status",
        "schema_version": 1,
        "site": "plant-01",
        "state": "offline",
        "reason": "connection-lost",
        "version": "0.1.0",
        "config_hash": "abc",
        "since": "2026-01-01T12:00:00.000Z",
    }
    line = describe("plantsync/v1/plant-01/status", json.dumps(status).encode())
    assert line == "plant-01 status offline 0.1.0 (connection-lost)"


def test_another_envelope_type_shows_its_scalar_payload_fields() -> None:
    ack = {**STATE, "type": "schedule.ack", "payload": {"result": "applied", "order": {"x": 1}}}
    line = describe("plantsync/v1/plant-01/up/ack", json.dumps(ack).encode())
    assert line.endswith("schedule.ack machine/press-1 #42 result=applied")


def test_anything_else_gets_the_topic_and_its_size() -> None:
    for payload in (b"\xff\xfe not json", b"[1, 2]", b'{"type": 3}', b"", b"[" * 100_000):
        assert describe("x/y", payload) == f"x/y <{len(payload)} bytes>"


def test_long_values_are_shortened() -> None:
    long = {**STATE, "payload": {"machine_id": "m", "values": [{"tag": "t", "value": "v" * 100}]}}
    line = describe(STATE_TOPIC, json.dumps(long).encode())
    assert line.endswith("t=" + "v" * 39 + "…")


async def test_tail_prints_one_line_per_message_of_the_site_and_stops_at_the_limit(
    broker: Mosquitto,
) -> None:
    config = HubConfig(url=broker.url)
    # Retained, so they are there when tail subscribes: no race with its SUBSCRIBE.
    async with HubConnection(config, client_id="agent", clean_start=True) as agent:
        for topic, payload in [
            ("plantsync/v1/plant-02/other", b"not for us"),
            (STATE_TOPIC, json.dumps(STATE).encode()),
            ("plantsync/v1/plant-01/raw", b"12345"),
        ]:
            await asyncio.wait_for(agent.publish(topic, payload, retain=True), 5)
    out = io.StringIO()
    async with asyncio.timeout(5):
        printed = await tail(config, site="plant-01", out=out, limit=2)
    assert printed == 2
    assert sorted(line.split(" ", 1)[1] for line in out.getvalue().splitlines()) == [
        "plant-01 machine.state machine/press-1 #42 speed=12.5 state=Executing",
        "plantsync/v1/plant-01/raw <5 bytes>",
    ]


async def test_tail_returns_after_the_idle_timeout(broker: Mosquitto) -> None:
    out = io.StringIO()
    async with asyncio.timeout(5):
        printed = await tail(HubConfig(url=broker.url), site=None, out=out, idle_timeout=0.3)
    assert printed == 0
    assert out.getvalue() == ""


# ---- business messages: one readable line each --------------------------------------------------

ORIGINAL_ID = "0193a1c2-7c42-7000-8eb4-cb2acc6a4ece"


def up_message(message_type: str, stream: str, payload: dict[str, Any], **extra: Any) -> bytes:
    header = {**STATE, "type": message_type, "source": "agent", "stream": stream, "seq": 3}
    return json.dumps({**header, **extra, "payload": payload}).encode()


def ack_bytes(**payload: Any) -> bytes:
    fields = {"original_id": ORIGINAL_ID, "original_type": "schedule.revision", **payload}
    return up_message("schedule.ack", "acks", fields, correlation_id="plan-48")


def test_an_ack_shows_outcome_orders_and_the_id_it_answers() -> None:
    line = describe(
        "t", ack_bytes(outcome="applied", orders=[{"order_id": "JO-4711", "revision": 2}])
    )
    assert line == f"plant-01 schedule.ack acks #3 applied JO-4711@2 (re: {ORIGINAL_ID})"


def test_a_rejection_shows_its_reason_code_and_its_reason_shortened() -> None:
    reason = "revision 1 is older than revision 2, which the plant applied " + "x" * 100
    line = describe(
        "t",
        ack_bytes(
            outcome="rejected",
            reason_code="stale",
            reason=reason,
            orders=[{"order_id": "JO-4711", "revision": 1}],
        ),
    )
    assert line.startswith('plant-01 schedule.ack acks #3 rejected stale JO-4711@1 "revision 1 is')
    assert line.endswith(f'…" (re: {ORIGINAL_ID})')
    assert len(line) < 200


def test_an_order_status_shows_order_revision_state_and_equipment() -> None:
    status = {
        "order_id": "JO-4711",
        "revision": 2,
        "state": "Running",
        "request_state": "Released",
        "equipment_id": "press-1",
        "changed_at": "2026-11-25T09:12:03.512Z",
    }
    line = describe("t", up_message("order.status", "order/JO-4711", status))
    assert (
        line
        == "plant-01 order.status order/JO-4711 #3 JO-4711@2 Running request=Released on press-1"
    )


def confirmation(final: bool) -> dict[str, Any]:
    return {
        "confirmation_id": "CNF-1",
        "order_id": "JO-4711",
        "revision": 2,
        "good_quantity": {"value": "598.250", "unit": "kg"},
        "scrap_quantity": {"value": "1.75", "unit": "kg"},
        "actual_start": "2026-11-25T06:00:00Z",
        "actual_end": "2026-11-25T09:00:00Z",
        "final": final,
    }


def test_a_confirmation_shows_exact_quantities_and_whether_it_is_the_last() -> None:
    final = describe(
        "t", up_message("production.confirmation", "order/JO-4711", confirmation(True))
    )
    assert final == (
        "plant-01 production.confirmation order/JO-4711 #3 good=598.250 kg scrap=1.75 kg final"
    )
    partial = up_message(
        "production.confirmation", "order/JO-4711", confirmation(False), historical=True
    )
    assert describe("t", partial).endswith("#3 (historical) good=598.250 kg scrap=1.75 kg partial")


def test_a_resync_request_says_why_and_which_seqs() -> None:
    gap = {"reason": "gap", "last_seq_seen": 41, "received_seq": 44}
    line = describe("t", up_message("resync.request", "resync", gap))
    assert line == "plant-01 resync.request resync #3 gap: last seq seen 41, received 44"
    startup = up_message("resync.request", "resync", {"reason": "startup", "last_seq_seen": 0})
    assert describe("t", startup).endswith("startup: last seq seen 0")


def test_a_schedule_shows_each_order_at_its_revision() -> None:
    orders = [{"order_id": "JO-4711", "revision": 1}, {"order_id": "JO-4712", "revision": 3}]
    schedule = up_message("schedule.snapshot", "schedule", {"orders": orders, "as_of_seq": 41})
    line = describe("plantsync/v1/plant-01/down/schedule", schedule)
    assert line == "plant-01 schedule.snapshot schedule #3 as_of_seq=41 JO-4711@1 JO-4712@3"


def test_a_business_message_that_does_not_validate_gets_the_generic_line() -> None:
    line = describe("t", ack_bytes(outcome="exploded", orders="JO-4711"))
    assert line.startswith("plant-01 schedule.ack acks #3 original_id=")
    assert "outcome=exploded" in line

"""``plantsync hub publish``: a schedule from a file, validated, sent, and its acks printed."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plantsync.config.model import HubConfig
from plantsync.contracts import (
    AckOutcome,
    OrderRef,
    ReasonCode,
    ScheduleAck,
    ScheduleAckMessage,
    Topics,
    new_message_id,
    parse_down_message,
)
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import MessageRejected
from plantsync.tools.cli import main
from plantsync.tools.hubtools import (
    SeqMark,
    SeqState,
    is_final,
    prepare_down_message,
    read_message_file,
)
from plantsync.tools.localbroker import Mosquitto
from tests.contracts.examples import PAYLOADS, SITE, down_message

TOPICS = Topics("plantsync/v1", SITE)
TOML_RELEASE = """\
type = "schedule.release"

[[payload.orders]]
order_id = "JO-4711"
revision = 1
product_id = "PRD-100"
quantity = { value = "1200.000", unit = "kg" }
work_center = "line-1"
planned_start = 2026-11-25T06:00:00Z
planned_end = 2026-11-25T14:00:00Z
priority = 10
request_state = "Released"

[[payload.orders.segments]]
process_segment_id = "mix"
duration = "PT2H"
"""

Answer = tuple[AckOutcome, ReasonCode | None]


@dataclass
class FakeAgent:
    """The site's side: records what comes down and answers each message with given acks."""

    answers: Sequence[Answer]
    topic: str = TOPICS.down_schedule
    received: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, broker_url: str, subscribed: asyncio.Event) -> None:
        config = HubConfig(url=broker_url)
        client_id = f"fake-agent-{self.topic.rsplit('/', 1)[-1]}"  # one per topic it serves
        async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
            await hub.subscribe([(self.topic, 1)])
            subscribed.set()
            async for message in hub.messages():
                document = json.loads(message.payload)
                self.received.append(document)
                self.changed.set()
                for seq, (outcome, reason_code) in enumerate(self.answers, start=1):
                    ack = self._ack(document, seq, outcome, reason_code)
                    await asyncio.wait_for(hub.publish(TOPICS.ack, ack), 5)

    @staticmethod
    def _ack(
        original: dict[str, Any], seq: int, outcome: AckOutcome, reason_code: ReasonCode | None
    ) -> bytes:
        ack = ScheduleAckMessage(
            id=new_message_id(),
            site=SITE,
            source="downlink",
            seq=seq,
            event_time=datetime.now(UTC),
            correlation_id=original["correlation_id"],
            payload=ScheduleAck(
                original_id=original["id"],
                original_type=original["type"],
                outcome=outcome,
                reason_code=reason_code,
                reason="a planner said no" if reason_code else None,
                orders=[OrderRef(order_id="JO-4711", revision=1)],
            ),
        )
        return ack.model_dump_json().encode()


@contextlib.asynccontextmanager
async def fake_agent(
    broker_url: str, *answers: Answer, topic: str = TOPICS.down_schedule
) -> AsyncIterator[FakeAgent]:
    agent = FakeAgent(answers, topic)
    subscribed = asyncio.Event()
    task = asyncio.create_task(agent.run(broker_url, subscribed), name="fake-agent")
    try:
        async with asyncio.timeout(15):
            await subscribed.wait()
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def publish(broker: Mosquitto, file: Path, state_dir: Path, *options: str) -> int:
    """The CLI, in a thread of its own (it runs its own event loop), bounded in time."""
    argv = [
        "hub",
        "publish",
        str(file),
        "--site",
        SITE,
        "--broker",
        broker.url,
        "--state-dir",
        str(state_dir),
        *options,
    ]
    return await asyncio.wait_for(asyncio.to_thread(main, argv), 20)


def write_release(path: Path) -> Path:
    path.write_text(
        json.dumps({"type": "schedule.release", "payload": PAYLOADS["schedule.release"]})
    )
    return path


APPLIED: Answer = (AckOutcome.APPLIED, None)
ACCEPTED: Answer = (AckOutcome.ACCEPTED, None)


async def test_publish_prints_each_ack_and_exits_0_on_applied(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_agent(broker.url, ACCEPTED, APPLIED) as agent:
        code = await publish(broker, write_release(tmp_path / "release.json"), tmp_path)
    assert code == 0
    [sent] = agent.received
    assert parse_down_message(json.dumps(sent).encode(), site=SITE).seq == 1
    assert (sent["source"], sent["correlation_id"]) == ("hq:cli", sent["id"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"published schedule.release #1 {sent['id']} to {TOPICS.down_schedule}"
    assert lines[1].endswith(f"{SITE} ack #1 accepted JO-4711@1")
    assert lines[2].endswith(f"{SITE} ack #2 applied JO-4711@1")
    assert len(lines) == 3


@pytest.mark.parametrize(
    "answer",
    [
        (AckOutcome.REJECTED, ReasonCode.APPROVAL_REJECTED),
        (AckOutcome.WAITING_FOR_APPROVAL, None),
        (AckOutcome.ACCEPTED, ReasonCode.DUPLICATE),
    ],
)
async def test_a_rejection_waiting_or_duplicate_also_ends_the_wait(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str], answer: Answer
) -> None:
    async with fake_agent(broker.url, answer):
        code = await publish(broker, write_release(tmp_path / "release.json"), tmp_path)
    assert code == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert f" ack #1 {answer[0].value}" in last
    if answer[1] is ReasonCode.APPROVAL_REJECTED:
        assert last.endswith('approval-rejected JO-4711@1 "a planner said no"')


async def test_without_a_final_ack_within_wait_it_exits_1(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_agent(broker.url, ACCEPTED):
        code = await publish(broker, write_release(tmp_path / "r.json"), tmp_path, "--wait", "1")
    assert code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("accepted JO-4711@1")
    assert lines[-1].startswith("no final acknowledgement within 1s; the hub has the message")


async def test_without_an_agent_it_exits_1_after_wait(broker: Mosquitto, tmp_path: Path) -> None:
    code = await publish(broker, write_release(tmp_path / "r.json"), tmp_path, "--wait", "0.3")
    assert code == 1


async def test_an_unreachable_hub_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = Mosquitto(tmp_path / "never-started")  # a free port nobody listens on
    code = await publish(closed, write_release(tmp_path / "r.json"), tmp_path)
    assert code == 1
    assert capsys.readouterr().err.startswith("plantsync hub publish: ")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"type": "schedule.release", "payload": {"orders": []}}', "schema-violation"),
        ('{"type": "schedule.launch", "payload": {}}', "unknown-type"),
        ('{"type": "order.hold", "site": "plant-02", "payload": {}}', "wrong-site"),
        ("[1, 2]", "a JSON object"),
        ("{not json", "Expecting property name"),
    ],
)
async def test_an_invalid_file_exits_2_with_the_reason_and_sends_nothing(
    broker: Mosquitto,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    reason: str,
) -> None:
    file = tmp_path / "bad.json"
    file.write_text(content)
    async with fake_agent(broker.url, APPLIED) as agent:
        code = await publish(broker, file, tmp_path / "state")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await agent.changed.wait()
    assert code == 2
    assert agent.received == []
    err = capsys.readouterr().err
    assert err.startswith(f"plantsync hub publish: {file}: ")
    assert reason in err
    assert err.rstrip().endswith("nothing sent")
    assert not (tmp_path / "state").exists()


async def test_a_toml_file_is_sent_as_the_same_json_with_exact_quantities(
    broker: Mosquitto, tmp_path: Path
) -> None:
    file = tmp_path / "release.toml"
    file.write_text(TOML_RELEASE)
    async with fake_agent(broker.url, APPLIED) as agent:
        assert await publish(broker, file, tmp_path) == 0
    [order] = agent.received[0]["payload"]["orders"]
    assert order["quantity"] == {"value": "1200.000", "unit": "kg"}
    assert order["planned_start"] == "2026-11-25T06:00:00+00:00"
    assert order["segments"] == [{"process_segment_id": "mix", "duration": "PT2H"}]


async def test_the_seq_state_file_counts_the_sites_down_messages(
    broker: Mosquitto, tmp_path: Path
) -> None:
    file = write_release(tmp_path / "release.json")
    async with fake_agent(broker.url, APPLIED) as agent:
        for options in ([], [], ["--seq", "10"], []):
            assert await publish(broker, file, tmp_path / "state", *options) == 0
    assert [message["seq"] for message in agent.received] == [1, 2, 10, 11]
    state = SeqState.for_site(tmp_path / "state", HubConfig(url=broker.url), SITE)
    assert state.path == tmp_path / "state" / f"127.0.0.1_{SITE}.seq"
    assert state.path.read_text() == "11\n"


async def test_publishing_a_seq_below_the_last_resets_the_sequence_and_says_so(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's case: --seq 2 after seq 5 starts epoch 1, and the next plain publish sends
    seq 3 of epoch 1, not seq 3 again."""
    file = write_release(tmp_path / "release.json")
    async with fake_agent(broker.url, APPLIED) as agent:
        for options in ([], [], [], [], [], ["--seq", "2"], []):
            assert await publish(broker, file, tmp_path / "state", *options) == 0
    sent = [(message.get("seq_epoch", 0), message["seq"]) for message in agent.received]
    assert sent == [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 2), (1, 3)]
    state = SeqState.for_site(tmp_path / "state", HubConfig(url=broker.url), SITE)
    assert state.path.read_text() == "3 1\n"
    out = capsys.readouterr().out
    assert out.count("sequence reset") == 1
    assert "seq 2 is not above the last published 5 (epoch 0)" in out
    assert "published schedule.release #3 (epoch 1)" in out


async def test_an_alarm_ack_goes_to_down_alarm_on_its_own_stream_and_seq_state(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An alarm.ack never takes a seq of the schedule's sequence: the agent's gap detection on
    the schedule stream would see a hole for every ack otherwise."""
    release = write_release(tmp_path / "release.json")
    ack = tmp_path / "ack.json"
    ack.write_text(json.dumps({"type": "alarm.ack", "payload": PAYLOADS["alarm.ack"]}))
    state_dir = tmp_path / "state"
    async with (
        fake_agent(broker.url, APPLIED) as schedule_side,
        fake_agent(broker.url, APPLIED, topic=TOPICS.down_alarm) as alarm_side,
    ):
        for file in (release, ack, ack, release):
            assert await publish(broker, file, state_dir) == 0
    assert [(m["stream"], m["seq"]) for m in schedule_side.received] == [
        ("schedule", 1),
        ("schedule", 2),
    ]
    assert [(m["type"], m["stream"], m["seq"]) for m in alarm_side.received] == [
        ("alarm.ack", "alarm-acks", 1),
        ("alarm.ack", "alarm-acks", 2),
    ]
    hub = HubConfig(url=broker.url)
    assert SeqState.for_site(state_dir, hub, SITE).path.read_text() == "2\n"
    acks_state = SeqState.for_site(state_dir, hub, SITE, "alarm-acks")
    assert acks_state.path == state_dir / f"127.0.0.1_{SITE}.alarm-acks.seq"
    assert acks_state.path.read_text() == "2\n"
    assert "published alarm.ack #2" in capsys.readouterr().out


# ---- the envelope the tool builds (no broker) ---------------------------------------------------


def first_seq() -> int:
    return 1


def test_a_full_envelope_is_kept_as_written() -> None:
    envelope = down_message("order.hold")
    message = prepare_down_message(envelope, site=SITE, default_seq=first_seq)
    assert json.loads(message.payload) == envelope
    assert (message.message_id, message.seq) == (envelope["id"], 42)


def test_options_override_the_file_and_missing_fields_are_filled() -> None:
    document = {"type": "order.cancel", "payload": PAYLOADS["order.cancel"], "seq": 5}
    message = prepare_down_message(
        document,
        site=SITE,
        default_seq=first_seq,
        seq=7,
        source="hq:sap-pp",
        correlation_id="plan-48",
    )
    sent = json.loads(message.payload)
    assert next(iter(sent)) == "id"
    assert (sent["seq"], sent["source"], sent["correlation_id"]) == (7, "hq:sap-pp", "plan-48")
    assert (sent["site"], sent["stream"], sent["schema_version"]) == (SITE, "schedule", 1)
    assert datetime.fromisoformat(sent["event_time"]).tzinfo is not None


def test_a_quantity_written_as_a_number_is_refused_like_the_agent_would() -> None:
    payload = json.loads(json.dumps(PAYLOADS["schedule.release"]))
    payload["orders"][0]["quantity"]["value"] = 1200.0
    with pytest.raises(MessageRejected) as refused:
        prepare_down_message(
            {"type": "schedule.release", "payload": payload}, site=SITE, default_seq=first_seq
        )
    assert refused.value.reason_code == "schema-violation"
    assert "orders.0.quantity.value" in refused.value.detail


def test_a_snapshot_needs_a_seq_above_its_as_of_seq() -> None:
    snapshot = {"type": "schedule.snapshot", "payload": PAYLOADS["schedule.snapshot"]}
    with pytest.raises(MessageRejected, match="as_of_seq"):
        prepare_down_message(snapshot, site=SITE, default_seq=first_seq)
    assert prepare_down_message(snapshot, site=SITE, default_seq=lambda: 42).seq == 42


def test_a_toml_local_time_without_offset_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "naive.toml"
    file.write_text(TOML_RELEASE.replace("06:00:00Z", "06:00:00"))
    with pytest.raises(MessageRejected, match="timezone"):
        prepare_down_message(read_message_file(file), site=SITE, default_seq=first_seq)


def test_a_seq_state_file_without_a_number_is_an_error(tmp_path: Path) -> None:
    state = SeqState(tmp_path / "x.seq")
    assert state.last() == SeqMark()
    state.store(SeqMark(seq=3))
    assert state.last() == SeqMark(seq=3)
    state.path.write_text("three")
    with pytest.raises(ValueError, match="not a number"):
        state.last()


def test_the_seq_state_never_moves_back(tmp_path: Path) -> None:
    state = SeqState(tmp_path / "x.seq")
    state.store(SeqMark(seq=5))
    state.store(SeqMark(seq=4))  # another publish got further first
    assert state.path.read_text() == "5\n"
    state.store(SeqMark(epoch=1, seq=2))  # a reset: a later epoch
    assert state.last() == SeqMark(epoch=1, seq=2)
    assert state.path.read_text() == "2 1\n"


def test_a_seq_not_above_the_last_starts_the_next_epoch() -> None:
    document = {"type": "order.cancel", "payload": PAYLOADS["order.cancel"]}
    after = SeqMark(epoch=0, seq=5)

    reset = prepare_down_message(document, site=SITE, default_seq=first_seq, seq=2, after=after)
    onward = prepare_down_message(document, site=SITE, default_seq=lambda: 6, after=after)
    own = prepare_down_message(
        {**document, "seq_epoch": 0}, site=SITE, default_seq=first_seq, seq=2, after=after
    )

    assert (reset.mark, reset.reset_from) == (SeqMark(epoch=1, seq=2), after)
    assert json.loads(reset.payload)["seq_epoch"] == 1
    notice = reset.reset_notice()
    assert notice is not None
    assert "sequence reset" in notice
    assert "see seq 1 of it as missing" in notice
    assert (onward.mark, onward.reset_notice()) == (SeqMark(epoch=0, seq=6), None)
    assert "seq_epoch" not in json.loads(onward.payload)  # epoch 0 is never written
    assert (own.mark, own.reset_from) == (SeqMark(epoch=0, seq=2), None)  # the author's epoch


@pytest.mark.parametrize(
    ("outcome", "reason_code", "final"),
    [
        (AckOutcome.ACCEPTED, None, False),
        (AckOutcome.PENDING, ReasonCode.PLANT_UNAVAILABLE, False),
        (AckOutcome.ACCEPTED, ReasonCode.DUPLICATE, True),
        (AckOutcome.WAITING_FOR_APPROVAL, None, True),
        (AckOutcome.APPLIED, None, True),
        (AckOutcome.REJECTED, ReasonCode.STALE, True),
        (AckOutcome.FAILED, ReasonCode.PLANT_REJECTED, True),
    ],
)
def test_which_outcomes_end_the_wait(
    outcome: AckOutcome, reason_code: ReasonCode | None, final: bool
) -> None:
    ack = ScheduleAck(original_id="x", outcome=outcome, reason_code=reason_code)
    assert is_final(ack) is final

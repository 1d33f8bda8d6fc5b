"""``hub tail`` and ``hub publish`` as people run them: the agent's connection settings, any
broker (amqtt speaks MQTT 3.1.1 only), one line and an exit code for every failure, and no
claim the tool cannot know."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.contracts import SiteStatus, Topics
from plantsync.drivers.mqtt import HubConnection
from plantsync.tools.cli import main
from plantsync.tools.localbroker import Mosquitto, free_port
from tests.contracts.examples import PAYLOADS, SITE
from tests.fixtures.amqtt import Amqtt
from tests.hq.test_publish import APPLIED, fake_agent

TOPICS = Topics("plantsync/v1", SITE)


def plantsync(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command as a process of its own: what a person sees, tracebacks included."""
    return subprocess.run(
        [sys.executable, "-m", "plantsync", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.splitlines()
    return line


async def retained(url: str, topic: str, payload: bytes) -> None:
    config = HubConfig(url=url, protocol=MqttProtocol.V311)
    async with HubConnection(config, client_id="seed", clean_start=True) as seed:
        await asyncio.wait_for(seed.publish(topic, payload, retain=True), 5)


# ---- hub tail ----------------------------------------------------------------------------------


async def test_tail_reads_amqtt_with_default_settings(amqtt_broker: Amqtt) -> None:
    await retained(amqtt_broker.url, f"{TOPICS.root}/raw", b"12345")
    result = await asyncio.to_thread(
        plantsync, "hub", "tail", "--broker", amqtt_broker.url, "--site", SITE, "--limit", "1"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 1)[1] == f"{TOPICS.root}/raw <5 bytes>\n"
    assert one_line(result.stderr) == (
        f"tail: {amqtt_broker.url} (MQTT 3.1.1), subscribed to {TOPICS.root}/#"
    )


async def test_tail_takes_the_hub_of_an_agent_config_and_the_environment(
    amqtt_broker: Amqtt, tmp_path: Path
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(f'[site]\nid = "{SITE}"\n[hub]\nurl = "mqtt://127.0.0.1:1"\n')
    await retained(amqtt_broker.url, f"{TOPICS.root}/raw", b"x")
    result = await asyncio.to_thread(
        plantsync,
        *("hub", "tail", "--config", str(config), "--limit", "1"),
        env={"PLANTSYNC_HUB__URL": amqtt_broker.url, "PLANTSYNC_HUB__PROTOCOL": "3.1.1"},
    )
    assert result.returncode == 0, result.stderr
    assert f"{amqtt_broker.url} (MQTT 3.1.1)" in result.stderr


def test_an_unreachable_hub_is_one_line_and_exit_1() -> None:
    result = plantsync("hub", "tail", "--broker", f"mqtt://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("plantsync hub tail: connection to mqtt://127.0.0.1:")
    assert "Connection refused" in line


def test_a_hub_that_refuses_us_is_one_line_and_exit_3(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", extra_config="allow_anonymous false") as refusing:
        result = plantsync("hub", "tail", "--broker", refusing.url)
    assert result.returncode == 3
    assert one_line(result.stderr).startswith("plantsync hub tail: the hub refused us: ")
    assert "Not authorized" in result.stderr


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--broker", "http://h"], {}, "--broker: hub.url: "),
        ([], {}, "hub.url: required: give --broker, --config FILE or PLANTSYNC_HUB__URL"),
        (["--broker", "mqtt://h"], {"PLANTSYNC_HUB__COLOUR": "1"}, "PLANTSYNC_HUB__COLOUR"),
        (["--broker", "mqtt://h", "--password-env", "NOT_SET_ANYWHERE"], {}, "is not set"),
        (["--broker", "mqtt://h", "--site", "a/b"], {}, "--site 'a/b' is not a site id"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(
    argv: list[str], env: dict[str, str], says: str
) -> None:
    result = plantsync("hub", "tail", *argv, env=env)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("plantsync hub tail: ")
    assert says in line


# ---- hub publish -------------------------------------------------------------------------------


async def publish(url: str, tmp_path: Path, *options: str) -> int:
    file = tmp_path / "release.json"
    file.write_text(
        json.dumps({"type": "schedule.release", "payload": PAYLOADS["schedule.release"]})
    )
    argv = ["hub", "publish", str(file), "--site", SITE, "--broker", url, *options]
    argv += ["--state-dir", str(tmp_path / "state")]
    return await asyncio.wait_for(asyncio.to_thread(main, argv), 30)


async def test_publish_to_amqtt_with_default_settings_prints_the_acks(
    amqtt_broker: Amqtt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fake_agent(amqtt_broker.url, APPLIED) as agent:
        code = await publish(amqtt_broker.url, tmp_path)
    assert code == 0
    assert len(agent.received) == 1
    assert capsys.readouterr().out.splitlines()[-1].endswith(f"{SITE} ack #1 applied JO-4711@1")


async def test_without_an_answer_it_says_the_site_never_connected_when_no_status_is_held(
    amqtt_broker: Amqtt, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await publish(amqtt_broker.url, tmp_path, "--wait", "1") == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("no final acknowledgement within 1s; the hub has the message")
    assert f"the hub holds no status of {SITE} (its agent never connected here" in last
    assert "keeps it for the site's session" not in last


async def test_without_an_answer_it_repeats_the_sites_retained_status(
    broker: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = SiteStatus(
        site=SITE,
        state="offline",
        reason="connection-lost",
        version="0.1.0",
        config_hash="abc",
        since=datetime.now(UTC),
    )
    await retained(broker.url, TOPICS.status, status.model_dump_json().encode())
    assert await publish(broker.url, tmp_path, "--wait", "1") == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert f"{SITE}'s agent is offline (connection-lost, per its retained status)" in last

"""The agent as plant IT runs it (``plantsync run``, secrets from the environment and the
file, debug logging) through a failed and then a successful connect of every link: no secret in
anything it wrote or answered, and its store readable by the service user only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager

from plantsync.tools.localbroker import Mosquitto
from tests.fixtures.opcua import free_port
from tests.security.support import PASSWORDS, Authority, mqtts_url

pytestmark = pytest.mark.slow

SITE = "plant-a"
"""A user of the password broker: its username is the site id (the shipped ACL)."""
HUB_PASSWORD = PASSWORDS[SITE]
OPCUA_PASSWORD = "opc-ua-Pa55-do-not-log-5501"  # noqa: S105 - the test looks for leaks of it
API_TOKEN = "api-t0ken-never-in-logs-0123456789"  # noqa: S105 - the test looks for leaks of it
SECRETS = (HUB_PASSWORD, OPCUA_PASSWORD, API_TOKEN)
WAIT = 30.0
"""Seconds any link may take to fail or come up; reconnects are fast in this config."""


def config_toml(broker: Mosquitto, authority: Authority, opcua_port: int, data: Path) -> str:
    """The OPC UA password sits in the file (lists cannot come from the environment); the
    hub password and the API token come from the environment, as the packaging advises."""
    return f"""\
[site]
id = "{SITE}"

[hub]
url = "{mqtts_url(broker)}"
username = "{SITE}"
keepalive = "5s"
connect_timeout = "2s"

[hub.tls]
ca_file = "{authority.cert_file}"

[store]
path = "{data / "store.db"}"
archive_max_age = "1h"

[api]
port = {free_port()}

[log]
level = "debug"

[reconnect]
initial_delay = "100ms"
max_delay = "500ms"

[[opcua]]
name = "line-1"
endpoint = "opc.tcp://127.0.0.1:{opcua_port}/plantsync/"
username = "plantsync"
password = "{OPCUA_PASSWORD}"
request_timeout = "2s"

[[opcua.machines]]
id = "press-1"
tags = [{{ name = "speed", node_id = "ns=2;s=press-1.speed" }}]
"""


class _OneUser(UserManager):
    """Lets in "plantsync" with OPCUA_PASSWORD, nobody else."""

    def get_user(
        self,
        iserver: object,
        username: str | None = None,
        password: str | None = None,
        certificate: object = None,
    ) -> User | None:
        if username == "plantsync" and password == OPCUA_PASSWORD:
            return User(role=UserRole.User)
        return None


@contextlib.asynccontextmanager
async def password_plant(port: int) -> AsyncIterator[None]:
    """An OPC UA server that takes user name and password only, with the one tag we read."""
    server = Server(user_manager=_OneUser())
    await server.init()
    server.disable_clock()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/plantsync/")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    server.set_identity_tokens([ua.UserNameIdentityToken])
    namespace = await server.register_namespace("urn:plantsync:test-plant")
    assert namespace == 2, "the config names ns=2"
    await server.nodes.objects.add_variable(f"ns={namespace};s=press-1.speed", "speed", 1.5)
    async with server:
        yield


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The agent processes a test starts; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_no_secret_is_logged_or_answered_and_the_store_is_owner_only_after_a_run(
    password_hub: Mosquitto,
    authority: Authority,
    tmp_path: Path,
    agent_process: list[subprocess.Popen[bytes]],
) -> None:
    await asyncio.to_thread(password_hub.stop)  # the first connects fail
    opcua_port = free_port()
    data = tmp_path / "data"
    config_file = tmp_path / "agent.toml"
    config_file.write_text(config_toml(password_hub, authority, opcua_port, data))
    log_file = tmp_path / "agent.log"
    environment = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("PLANTSYNC_")},
        "PLANTSYNC_HUB__PASSWORD": HUB_PASSWORD,
        "PLANTSYNC_API__TOKEN": API_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    agent = start_agent(config_file, log_file, environment)
    agent_process.append(agent)
    port = int(config_file.read_text().split("[api]\nport = ")[1].split("\n")[0])

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as api:
        failed = await _links_until(api, lambda link: link["failures"] >= 1)
        await asyncio.to_thread(password_hub.start)
        async with password_plant(opcua_port):
            connected = await _links_until(api, lambda link: link["state"] == "up")
            answers = [
                await api.get(path, headers={"Authorization": f"Bearer {API_TOKEN}"})
                for path in ("/api/v1/status", "/", "/metrics", "/openapi.json")
            ]
            running_modes = _modes(data)
            agent.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.wait, WAIT) == 0, log_file.read_text()

    log = log_file.read_text()
    assert {name for name, link in failed.items() if link["failures"]} >= {"hub", "opcua:line-1"}
    assert {connected["hub"]["state"], connected["opcua:line-1"]["state"]} == {"up"}
    assert "DEBUG" in log, "the run logged at debug level: the strictest case for leaks"
    assert [answer.status_code for answer in answers] == [200] * 4
    for secret in SECRETS:
        assert secret not in log, f"a secret in the log: {secret[:4]}…"
        for answer in answers:
            assert secret not in answer.text, f"a secret in {answer.url}"
    assert running_modes["."] == 0o700
    assert {"store.db", "store.db-wal", "store.db-shm"} <= running_modes.keys()
    assert {name: m for name, m in running_modes.items() if name != "."} == dict.fromkeys(
        [name for name in running_modes if name != "."], 0o600
    )
    after = _modes(data)
    assert after["."] == 0o700
    assert all(m == 0o600 for name, m in after.items() if name != "."), after


def start_agent(
    config_file: Path, log_file: Path, environment: dict[str, str]
) -> subprocess.Popen[bytes]:
    """``plantsync run`` with stdout and stderr, everything it prints, in ``log_file``."""
    with log_file.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "plantsync", "run", "--config", str(config_file)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
        )


async def _links_until(api: httpx.AsyncClient, condition: Any) -> dict[str, dict[str, Any]]:
    """The status page's links once the hub and the OPC UA link both meet ``condition``."""
    async with asyncio.timeout(WAIT):
        while True:
            try:
                links: dict[str, dict[str, Any]] = (await api.get("/api/v1/status")).json()["links"]
            except httpx.TransportError:
                links = {}  # not listening yet
            if links and all(condition(links[name]) for name in ("hub", "opcua:line-1")):
                return links
            await asyncio.sleep(0.1)


def _modes(data: Path) -> dict[str, int]:
    """The data directory's mode as ".", and every file's in it by name."""
    return {".": mode(data)} | {path.name: mode(path) for path in data.iterdir()}

"""Username and password over TLS on a real Mosquitto (password file from mosquitto_passwd):
the right ones connect, a wrong one is a misconfiguration, and no password leaks."""

from __future__ import annotations

import asyncio
import logging
import traceback
from datetime import timedelta

import pytest
from pydantic import SecretStr

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.config.types import Tls
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import LinkMisconfigured
from plantsync.tools.localbroker import Mosquitto
from tests.security.support import PASSWORDS, Authority, mqtts_url

BOTH_PROTOCOLS = pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])
REFUSED = r"(?i)not authorized|bad user name or password"
WRONG_PASSWORD = "wrong-but-secret-9137"  # noqa: S105 - the test looks for leaks of it


def login(
    broker: Mosquitto,
    authority: Authority,
    username: str,
    password: str,
    protocol: MqttProtocol = MqttProtocol.V5,
) -> HubConfig:
    return HubConfig(
        url=mqtts_url(broker),
        protocol=protocol,
        username=username,
        password=SecretStr(password),
        tls=Tls(ca_file=authority.cert_file),
        keepalive=timedelta(seconds=5),
        connect_timeout=timedelta(seconds=3),
    )


@BOTH_PROTOCOLS
async def test_the_right_password_connects_and_publishes_under_the_users_own_subtree(
    password_hub: Mosquitto, authority: Authority, protocol: MqttProtocol
) -> None:
    config = login(password_hub, authority, "plant-a", PASSWORDS["plant-a"], protocol)
    async with asyncio.timeout(5), HubConnection(config, client_id="plant-a") as hub:
        await hub.subscribe([("plantsync/v1/plant-a/#", 1)])
        await hub.publish("plantsync/v1/plant-a/up/state", b"logged in", qos=1)
        async for message in hub.messages():
            assert message.payload == b"logged in"
            break


@BOTH_PROTOCOLS
async def test_a_wrong_password_is_refused_as_misconfigured(
    password_hub: Mosquitto, authority: Authority, protocol: MqttProtocol
) -> None:
    config = login(password_hub, authority, "plant-a", WRONG_PASSWORD, protocol)
    with pytest.raises(LinkMisconfigured, match=REFUSED):
        async with asyncio.timeout(5), HubConnection(config, client_id="plant-a"):
            pass


async def test_an_unknown_user_is_refused_as_misconfigured(
    password_hub: Mosquitto, authority: Authority
) -> None:
    config = login(password_hub, authority, "plant-z", PASSWORDS["plant-a"])
    with pytest.raises(LinkMisconfigured, match=REFUSED):
        async with asyncio.timeout(5), HubConnection(config, client_id="plant-z"):
            pass


async def test_the_password_appears_neither_in_the_error_nor_in_the_logs(
    password_hub: Mosquitto, authority: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    config = login(password_hub, authority, "plant-a", WRONG_PASSWORD)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(LinkMisconfigured) as refused:
        async with asyncio.timeout(5), HubConnection(config, client_id="plant-a"):
            pass
    # The whole chain, as a traceback would print it, and the config's own text.
    printed = "".join(traceback.format_exception(refused.value))
    assert WRONG_PASSWORD not in printed
    assert WRONG_PASSWORD not in repr(config) + str(config)
    assert all(WRONG_PASSWORD not in record.getMessage() for record in caplog.records)

"""A whole agent on a hub that demands mutual TLS and applies the shipped ACL: its status and
confirmations reach an HQ consumer that authenticates with its own certificate."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from plantsync.config.model import HubConfig
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.contracts.schedule import Quantity
from plantsync.drivers.mqtt import HubConnection
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import SITE, agent_config, eventually, running_agent
from tests.fixtures.opcua import free_port
from tests.security.support import Authority, hub_as

pytestmark = pytest.mark.slow


def hub_over_tls(broker: Mosquitto, authority: Authority, common_name: str) -> HubConfig:
    """Mutual TLS as the identity ``common_name``: the username the ACL's %u expands to."""
    return hub_as(broker, authority, authority.client(common_name))


def _no_opcua_server() -> OpcUaServerConfig:
    return OpcUaServerConfig.model_validate(
        {
            "name": "none",
            "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
            "machines": [{"id": "m", "tags": [{"name": "t", "node_id": "ns=2;s=t"}]}],
        }
    )


def _confirmation() -> ProductionConfirmation:
    now = datetime.now(UTC)
    return ProductionConfirmation(
        confirmation_id="JO-1-1",
        order_id="JO-1",
        revision=1,
        good_quantity=Quantity(value=Decimal(10), unit="pcs"),
        scrap_quantity=Quantity(value=Decimal(0), unit="pcs"),
        actual_start=now - timedelta(minutes=1),
        actual_end=now,
        final=True,
    )


async def _next_of_type(hq: HubConnection, message_type: str) -> tuple[bool, dict[str, Any]]:
    """The next message of ``message_type`` (others, like a resync request, are skipped)."""
    async with asyncio.timeout(10):
        async for message in hq.messages():
            document: dict[str, Any] = json.loads(message.payload)
            if document["type"] == message_type:
                return message.retain, document
    raise AssertionError("messages() ended")


async def test_an_agent_with_a_client_certificate_reaches_hq_through_the_shipped_acl(
    tls_hub: Mosquitto, authority: Authority, tmp_path: Path
) -> None:
    base = agent_config(tmp_path / "store.db", tls_hub.url, _no_opcua_server())
    config = base.model_copy(update={"opcua": [], "hub": hub_over_tls(tls_hub, authority, SITE)})
    hq_config = hub_over_tls(tls_hub, authority, "hq-integration")
    async with running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        async with HubConnection(hq_config, client_id="hq", clean_start=True) as hq:
            await hq.subscribe([(f"plantsync/v1/{SITE}/status", 1), ("plantsync/v1/+/up/#", 1)])
            retained, status = await _next_of_type(hq, "site.status")
            assert agent.business is not None
            await agent.business.confirmation(_confirmation(), source="test")
            _, confirmation = await _next_of_type(hq, "production.confirmation")
    assert retained
    assert (status["site"], status["state"]) == (SITE, "online")
    assert confirmation["payload"]["confirmation_id"] == "JO-1-1"

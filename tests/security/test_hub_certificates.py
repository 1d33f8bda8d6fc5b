"""The hub's certificates in production (issue 15, item 5), against a real Mosquitto on TLS:
the broker's own certificate, read from the TLS socket at connect, shows with its expiry on the
status page and in /metrics; a client certificate swapped under a live link is used at once,
and no business message is lost or doubled on the way."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography import x509

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig, HubConfig
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts.orders import ProductionConfirmation
from plantsync.contracts.schedule import Quantity
from plantsync.drivers.mqtt import HubConnection
from plantsync.tools.localbroker import Mosquitto
from tests.api.support import client
from tests.e2e.support import SITE, agent_config, eventually, running_agent
from tests.fixtures.opcua import free_port
from tests.security.support import Authority, Identity, hub_as

pytestmark = pytest.mark.slow


def _agent_config(tmp_path: Path, hub: HubConfig) -> AgentConfig:
    """The e2e agent with no OPC UA server: the hub link and the business writer only."""
    unused = OpcUaServerConfig.model_validate(
        {
            "name": "none",
            "endpoint": f"opc.tcp://127.0.0.1:{free_port()}/",
            "machines": [{"id": "m", "tags": [{"name": "t", "node_id": "ns=2;s=t"}]}],
        }
    )
    base = agent_config(tmp_path / "store.db", hub.url, unused)
    return base.model_copy(update={"opcua": [], "hub": hub})


def _not_after(path: Path) -> datetime:
    return x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc


async def test_the_brokers_own_certificate_shows_with_its_expiry_and_warns(
    tls_hub: Mosquitto, authority: Authority, server_identity: Identity, tmp_path: Path
) -> None:
    hub = hub_as(tls_hub, authority, authority.client(SITE))
    async with running_agent(_agent_config(tmp_path, hub)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        async with client(agent) as api:
            status = (await api.get("/api/v1/status")).raise_for_status().json()
            metrics = (await api.get("/metrics")).raise_for_status().text
            overview = (await api.get("/status/fragment")).json()["sections"]["overview"]

    [peer] = [c for c in status["certificates"] if c["role"] == "peer"]
    assert peer["link"] == "hub"
    assert "CN=localhost" in peer["file"]
    presented = datetime.fromisoformat(peer["not_after"])
    assert presented == _not_after(server_identity.cert_file)  # the broker's, not the CA's
    assert peer["warning"].startswith("expires in 1 days")  # the fixture's is valid for a day
    assert "(hub, peer): expires in 1 days" in overview
    assert f"its certificate valid until {presented:%Y-%m-%d %H:%M} UTC" in overview
    assert 'plantsync_peer_certificate_expiry_days{link="hub",subject="CN=localhost"} 0.9' in (
        metrics
    )


async def test_a_hub_without_tls_presents_no_certificate(broker: Mosquitto, tmp_path: Path) -> None:
    async with HubConnection(HubConfig(url=broker.url), client_id="plain") as hub:
        assert hub.peer_certificate is None


def _confirmation(number: int) -> ProductionConfirmation:
    now = datetime.now(UTC)
    return ProductionConfirmation(
        confirmation_id=f"JO-{number}-1",
        order_id=f"JO-{number}",
        revision=1,
        good_quantity=Quantity(value=Decimal(number), unit="pcs"),
        scrap_quantity=Quantity(value=Decimal(0), unit="pcs"),
        actual_start=now - timedelta(minutes=1),
        actual_end=now,
        final=True,
    )


@contextlib.asynccontextmanager
async def _hq(config: HubConfig) -> AsyncIterator[list[tuple[str, str]]]:
    """(message id, confirmation id) of every confirmation the site publishes, as received."""
    received: list[tuple[str, str]] = []
    async with HubConnection(config, client_id="hq", clean_start=True) as hq:
        await hq.subscribe([(f"plantsync/v1/{SITE}/up/#", 1)])

        async def collect() -> None:
            async for message in hq.messages():
                document = json.loads(message.payload)
                if document["type"] == "production.confirmation":
                    received.append((document["id"], document["payload"]["confirmation_id"]))

        task = asyncio.create_task(collect())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _replace(identity: Identity, cert_file: Path, key_file: Path) -> None:
    """A renewal as an operator's tooling does it: each file replaced whole (rename)."""
    for source, target in ((identity.key_file, key_file), (identity.cert_file, cert_file)):
        staged = target.with_suffix(".new")
        shutil.copyfile(source, staged)
        staged.replace(target)


async def _confirm(agent: Agent, numbers: range, pause: float = 0.0) -> None:
    assert agent.business is not None
    for number in numbers:
        await agent.business.confirmation(_confirmation(number), source="test")
        await asyncio.sleep(pause)


async def test_a_client_certificate_swapped_under_a_live_tls_hub_is_used_and_nothing_is_lost(
    identity_hub: Mosquitto, authority: Authority, tmp_path: Path
) -> None:
    old, new = authority.client("plant-a-2026"), authority.client("plant-a-2027")
    cert_file, key_file = tmp_path / "client.crt", tmp_path / "client.key"
    _replace(old, cert_file, key_file)
    hub = hub_as(identity_hub, authority, Identity(cert_file, key_file))
    hq = hub_as(identity_hub, authority, authority.client("hq-integration"))
    async with _hq(hq) as received, running_agent(_agent_config(tmp_path, hub)) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        await _confirm(agent, range(1, 4))  # before
        await eventually(lambda: len(received) >= 3, within=10)
        _replace(new, cert_file, key_file)
        await _confirm(agent, range(4, 10), pause=0.5)  # during: the watch looks every 2 s
        await eventually(lambda: agent.health["hub"].connects >= 2, within=20)
        await _confirm(agent, range(10, 13))  # after
        await eventually(lambda: len({c for _, c in received}) >= 12, within=20)
        await asyncio.sleep(0.5)  # a late duplicate would arrive now
        async with client(agent) as api:
            status = (await api.get("/api/v1/status")).raise_for_status().json()
        failures = agent.health["hub"].failures

    log = identity_hub.log_tail(200)
    assert "u'plant-a-2026'" in log
    assert log.index("u'plant-a-2027'") > log.index("u'plant-a-2026'")  # the broker saw the new
    [own] = [c for c in status["certificates"] if (c["link"], c["role"]) == ("hub", "own")]
    assert datetime.fromisoformat(own["not_after"]) == _not_after(new.cert_file)
    assert failures == 0
    # Exactly once as the contract counts it (HQ de-duplicates by the envelope's id, a QoS 1
    # redelivery keeps it): each confirmation under one id, and every one of them there.
    by_confirmation = Counter(c for _, c in set(received))
    assert by_confirmation == Counter(f"JO-{n}-1" for n in range(1, 13))

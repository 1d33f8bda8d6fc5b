"""TLS and mutual TLS to a real Mosquitto: what connects, and how each refusal reads."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.config.model import HubConfig
from plantsync.config.types import Tls
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable, LinkMisconfigured
from plantsync.tools.localbroker import Mosquitto
from tests.security.support import Authority, Identity, mqtts_url


def tls_hub_config(broker: Mosquitto, tls: Tls, **overrides: object) -> HubConfig:
    settings: dict[str, object] = {
        "url": mqtts_url(broker),
        "tls": tls,
        "keepalive": timedelta(seconds=5),
        "connect_timeout": timedelta(seconds=3),
        **overrides,
    }
    return HubConfig.model_validate(settings)


def client_tls(authority: Authority, identity: Identity | None, **overrides: object) -> Tls:
    settings: dict[str, object] = {"ca_file": authority.cert_file, **overrides}
    if identity is not None:
        settings |= {"cert_file": identity.cert_file, "key_file": identity.key_file}
    return Tls.model_validate(settings)


async def connect_and_publish(config: HubConfig) -> None:
    async with asyncio.timeout(5), HubConnection(config, client_id="plant-a") as hub:
        await hub.publish("plantsync/v1/plant-a/up/probe", b"over tls", qos=1)


async def test_a_client_certificate_signed_by_the_hub_ca_connects_and_a_qos1_publish_is_acked(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    tls = client_tls(authority, authority.client("plant-a"))
    await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_without_a_client_certificate_the_hub_refuses_the_link_as_misconfigured(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    with pytest.raises(LinkMisconfigured, match="refused our client certificate") as refused:
        await connect_and_publish(tls_hub_config(tls_hub, client_tls(authority, None)))
    assert mqtts_url(tls_hub) in str(refused.value)


async def test_a_client_certificate_from_another_ca_is_refused_as_misconfigured(
    tls_hub: Mosquitto, authority: Authority, tmp_path: Path
) -> None:
    stranger = Authority.create(tmp_path / "other-pki", "stranger-ca")
    tls = client_tls(authority, stranger.client("plant-a"))
    with pytest.raises(LinkMisconfigured, match=r"refused our client certificate.*unknown ca"):
        await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_a_hub_certificate_from_an_unknown_ca_is_refused_as_not_trusted(
    tls_hub: Mosquitto, authority: Authority, tmp_path: Path
) -> None:
    stranger = Authority.create(tmp_path / "other-pki", "stranger-ca")
    tls = client_tls(stranger, stranger.client("plant-a"))
    with pytest.raises(LinkMisconfigured, match=r"not trusted.*certificate verify failed"):
        await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_full_verification_refuses_a_hub_whose_certificate_names_another_host(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    tls = client_tls(authority, authority.client("plant-a"), server_name="hub.example.com")
    with pytest.raises(LinkMisconfigured, match=r"not trusted.*hub\.example\.com"):
        await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_ca_only_verification_accepts_the_hub_under_another_name(
    tls_hub: Mosquitto, authority: Authority
) -> None:
    tls = client_tls(
        authority, authority.client("plant-a"), server_name="hub.example.com", verify="ca-only"
    )
    await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_ca_only_verification_still_refuses_a_hub_from_an_unknown_ca(
    tls_hub: Mosquitto, authority: Authority, tmp_path: Path
) -> None:
    stranger = Authority.create(tmp_path / "other-pki", "stranger-ca")
    tls = client_tls(stranger, stranger.client("plant-a"), verify="ca-only")
    with pytest.raises(LinkMisconfigured, match="not trusted"):
        await connect_and_publish(tls_hub_config(tls_hub, tls))


async def test_a_plain_mqtt_client_cannot_talk_to_the_tls_listener(tls_hub: Mosquitto) -> None:
    config = HubConfig(url=tls_hub.url, connect_timeout=timedelta(seconds=2))
    with pytest.raises(HubUnavailable):
        await connect_and_publish(config)

"""Signed and encrypted OPC UA links, with certificates made for each test in tmp_path."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from plantsync.config.plant import SecurityMode, SecurityPolicy
from plantsync.drivers.opcua import OpcUaSource
from plantsync.errors import LinkMisconfigured
from plantsync.sim.plant import PlantSecurity, SimulatedPlant
from tests.fixtures.opcua import free_port
from tests.opcua.support import WAIT, next_reading

SERVER_URI = "urn:plantsync:simulated-plant:server"
CLIENT_URI = "urn:plantsync:test-agent"


@dataclass(frozen=True)
class Identity:
    certificate: Path
    private_key: Path


def make_identity(directory: Path, uri: str, usage: x509.ObjectIdentifier) -> Identity:
    """A self-signed application instance certificate (DER) and its key (PEM)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = cert_gen.generate_private_key()
    certificate = cert_gen.generate_self_signed_app_certificate(
        key,
        common_name=uri,
        names={"organizationName": "plantsync tests"},
        subject_alt_names=[
            x509.UniformResourceIdentifier(uri),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
        ],
        extended=[usage],
        days=1,
    )
    identity = Identity(directory / "cert.der", directory / "key.pem")
    identity.certificate.write_bytes(certificate.public_bytes(Encoding.DER))
    identity.private_key.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return identity


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> tuple[Identity, Identity]:
    """(server, client): RSA key generation is slow enough to do once per module."""
    root = tmp_path_factory.mktemp("pki")
    return (
        make_identity(root / "server", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH),
        make_identity(root / "client", CLIENT_URI, ExtendedKeyUsageOID.CLIENT_AUTH),
    )


def secure_plant(server: Identity, *trusted: Path) -> SimulatedPlant:
    security = PlantSecurity(server.certificate, server.private_key, trusted, SERVER_URI)
    return SimulatedPlant(port=free_port(), tick=None, machines=("press-1",), security=security)


@pytest.mark.parametrize(
    "policy", [SecurityPolicy.BASIC256SHA256, SecurityPolicy.AES256_SHA256_RSAPSS]
)
async def test_a_sign_and_encrypt_link_with_trusted_certificates_delivers_readings(
    identities: tuple[Identity, Identity], policy: SecurityPolicy
) -> None:
    server, client = identities
    async with secure_plant(server, client.certificate) as plant:
        config = plant.server_config(
            security_mode=SecurityMode.SIGN_AND_ENCRYPT,
            security_policy=policy,
            certificate=client.certificate,
            private_key=client.private_key,
            server_certificate=server.certificate,
        )
        async with OpcUaSource(config) as source:
            batches = source.readings()
            await next_reading(batches, "press-1", "speed")
            await plant.set_value("press-1", "speed", 12.0)
            reading = await next_reading(batches, "press-1", "speed")

    assert reading.value == 12.0


async def test_a_client_certificate_the_server_does_not_trust_is_misconfigured(
    identities: tuple[Identity, Identity],
) -> None:
    server, client = identities
    async with secure_plant(server) as plant:  # trusts no client
        config = plant.server_config(
            security_mode=SecurityMode.SIGN_AND_ENCRYPT,
            certificate=client.certificate,
            private_key=client.private_key,
            server_certificate=server.certificate,
        )
        with pytest.raises(LinkMisconfigured, match="BadCertificateUntrusted"):
            async with asyncio.timeout(WAIT), OpcUaSource(config):
                pass


async def test_security_without_a_server_certificate_to_trust_is_misconfigured(
    identities: tuple[Identity, Identity], tmp_path: Path
) -> None:
    _, client = identities
    plant = SimulatedPlant(port=free_port(), tick=None)  # never contacted
    config = plant.server_config(
        security_mode=SecurityMode.SIGN,
        certificate=client.certificate,
        private_key=client.private_key,
    )
    with pytest.raises(LinkMisconfigured, match="server_certificate"):
        async with asyncio.timeout(WAIT), OpcUaSource(config):
            pass


async def test_a_server_presenting_another_certificate_than_the_trusted_one_is_misconfigured(
    identities: tuple[Identity, Identity], tmp_path: Path
) -> None:
    server, client = identities
    trusted = make_identity(tmp_path / "trusted", SERVER_URI, ExtendedKeyUsageOID.SERVER_AUTH)
    async with secure_plant(server, client.certificate) as plant:  # trusts our client
        config = plant.server_config(
            security_mode=SecurityMode.SIGN_AND_ENCRYPT,
            certificate=client.certificate,
            private_key=client.private_key,
            server_certificate=trusted.certificate,  # not the certificate the server presents
        )
        # Bounded well below request_timeout: the error must come from the check, not a hang.
        with pytest.raises(LinkMisconfigured) as caught:
            async with asyncio.timeout(WAIT), OpcUaSource(config):
                pass

    message = str(caught.value)
    assert "server certificate is not trusted" in message
    assert str(trusted.certificate) in message

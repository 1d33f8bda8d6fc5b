"""The expiry of every certificate in use (own, CAs, the OPC UA servers' pinned ones): a metric
in days and a status-page warning from 30 days before (issue 15, item 5)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plantsync.config.certificates import certificates_in_use
from plantsync.config.model import AgentConfig
from plantsync.config.plant import JobControlConfig, OpcUaServerConfig
from plantsync.config.types import Tls
from tests.api.support import attached, client, config


def certificate_file(path: Path, days: float) -> Path:
    """A self-signed PEM certificate at ``path`` that expires in ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, path.stem)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def with_certificates(tmp_path: Path) -> AgentConfig:
    """Hub CA 400 days, hub client certificate 10 days, an OPC UA server pinned 90 days, the
    Job Control client certificate expired, its server certificate a file that is no
    certificate."""
    base = config(tmp_path / "store.db")
    key = tmp_path / "client.key"
    key.write_text("not read here")
    tls = Tls(
        ca_file=certificate_file(tmp_path / "hub-ca.crt", 400),
        cert_file=certificate_file(tmp_path / "hub-client.crt", 10),
        key_file=key,
    )
    line = OpcUaServerConfig.model_validate(
        {
            "name": "line-1",
            "endpoint": "opc.tcp://127.0.0.1:4840",
            "server_certificate": str(certificate_file(tmp_path / "line-1.der.crt", 90)),
            "machines": [{"id": "m", "tags": [{"name": "t", "node_id": "ns=2;s=t"}]}],
        }
    )
    garbage = tmp_path / "jc-server.crt"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    jobcontrol = JobControlConfig(
        endpoint="opc.tcp://127.0.0.1:4841",
        certificate=certificate_file(tmp_path / "jc-client.crt", -2),
        server_certificate=garbage,
    )
    hub = base.hub.model_copy(update={"tls": tls})
    return base.model_copy(update={"hub": hub, "opcua": [line], "jobcontrol": jobcontrol})


def test_every_certificate_file_of_the_config_is_found_with_its_expiry(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    found = {(c.link, c.role): c for c in certificates_in_use(with_certificates(tmp_path))}

    assert sorted(found) == [
        ("hub", "ca"),
        ("hub", "own"),
        ("opcua:line-1", "server"),
        ("plant", "own"),
        ("plant", "server"),
    ]
    days = {key: c.days_left(now) for key, c in found.items()}
    assert 399 < (days["hub", "ca"] or 0) <= 400
    assert 9 < (days["hub", "own"] or 0) <= 10
    assert -3 < (days["plant", "own"] or 0) < -1
    assert days["plant", "server"] is None
    assert "not a certificate" in (found["plant", "server"].problem or "")


def test_a_renewed_certificate_shows_without_a_restart(tmp_path: Path) -> None:
    settings = with_certificates(tmp_path)
    assert len(certificates_in_use(settings)) == 5  # read once: the 10-day certificate
    renewed = certificate_file(tmp_path / "hub-client.crt", 365)
    os.utime(renewed, ns=(1, 10**18))  # a new mtime, whatever the file system's resolution
    now = datetime.now(UTC)
    [own] = [c for c in certificates_in_use(settings) if (c.link, c.role) == ("hub", "own")]
    assert 364 < (own.days_left(now) or 0) <= 365


async def test_the_status_warns_within_30_days_and_the_metric_counts_the_days(
    tmp_path: Path,
) -> None:
    async with attached(with_certificates(tmp_path)) as agent, client(agent) as api:
        status = (await api.get("/api/v1/status")).raise_for_status().json()
        metrics = (await api.get("/metrics")).raise_for_status().text
        overview = (await api.get("/status/fragment")).json()["sections"]["overview"]

    warnings = {(c["link"], c["role"]): c["warning"] for c in status["certificates"]}
    assert warnings["hub", "ca"] is None
    assert warnings["opcua:line-1", "server"] is None
    assert warnings["hub", "own"].startswith("expires in 10 d")
    assert warnings["plant", "own"].startswith("expired on")
    assert "not a certificate" in warnings["plant", "server"]
    assert overview.count('data-alarm="certificate"') == 3
    assert "hub-client.crt (hub, own): expires in 10 d" in overview
    assert 'plantsync_certificate_expiry_days{file="' in metrics
    assert 'link="hub",role="own"} 9.9' in metrics

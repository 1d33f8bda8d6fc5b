"""Every certificate the config puts in use, and when each expires (issue 15, item 5).

    [hub.tls]            ca_file (the CA the broker's certificate must chain to), cert_file (own)
    [[opcua]], [jobcontrol]
                         certificate (own), server_certificate (the server's: pinned, so the
                         one the server presents, checked before each session)
    [mes.tls]            ca_file, cert_file

A CA bundle counts by its first certificate that expires. Files are read again only when they
change (size and mtime), so a renewed certificate shows at the next scrape without a restart.
Reading files is no network I/O: the metrics and the status page ask each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from plantsync.config.model import AgentConfig
from plantsync.config.plant import OpcUaClientConfig
from plantsync.config.types import Tls

WARN_DAYS = 30
"""Days before expiry from which the status page warns."""


@dataclass(frozen=True, slots=True)
class CertificateInUse:
    """One certificate file of one link: ``role`` is own, ca or server."""

    link: str
    role: str
    path: Path
    not_after: datetime | None
    """None when the file cannot be read or parsed (``problem`` says why)."""
    problem: str | None = None

    def days_left(self, now: datetime) -> float | None:
        if self.not_after is None:
            return None
        return (self.not_after - now).total_seconds() / 86400


_cache: dict[Path, tuple[tuple[int, int], datetime | None, str | None]] = {}


def certificates_in_use(config: AgentConfig) -> list[CertificateInUse]:
    """Every certificate file the config names, with its expiry."""
    named: list[tuple[str, str, Path | None]] = []
    named += _tls("hub", config.hub.tls)
    for server in config.opcua:
        named += _opcua(f"opcua:{server.name}", server)
    if config.jobcontrol is not None:
        named += _opcua("plant", config.jobcontrol)
    if config.mes is not None:
        named += _tls("plant", config.mes.tls)
    return [_in_use(link, role, path) for link, role, path in named if path is not None]


def material_files(config: AgentConfig) -> list[Path]:
    """Every certificate and private key file the config names: what a renewal replaces."""
    keys = [server.private_key for server in config.opcua]
    keys += [config.jobcontrol.private_key] if config.jobcontrol else []
    keys += [
        tls.key_file for tls in (config.hub.tls, config.mes.tls if config.mes else None) if tls
    ]
    return [c.path for c in certificates_in_use(config)] + [k for k in keys if k is not None]


def _opcua(link: str, server: OpcUaClientConfig) -> list[tuple[str, str, Path | None]]:
    return [(link, "own", server.certificate), (link, "server", server.server_certificate)]


def _tls(link: str, tls: Tls | None) -> list[tuple[str, str, Path | None]]:
    if tls is None:
        return []
    return [(link, "ca", tls.ca_file), (link, "own", tls.cert_file)]


def _in_use(link: str, role: str, path: Path) -> CertificateInUse:
    try:
        stat = path.stat()
        version = (stat.st_size, stat.st_mtime_ns)
        cached = _cache.get(path)
        if cached is None or cached[0] != version:
            cached = (version, *_expiry(path))
            _cache[path] = cached
        return CertificateInUse(link, role, path, cached[1], cached[2])
    except OSError as exc:
        return CertificateInUse(link, role, path, None, f"cannot read: {exc.strerror}")


def _expiry(path: Path) -> tuple[datetime | None, str | None]:
    from cryptography import x509  # read here: the agent's start-up needs no certificate parser

    data = path.read_bytes()
    try:
        if data.lstrip().startswith(b"-----"):
            certificates = x509.load_pem_x509_certificates(data)
        else:
            certificates = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        return None, f"not a certificate: {exc}"[:200]
    return min(c.not_valid_after_utc for c in certificates).astimezone(UTC), None

"""A throwaway PKI and Mosquitto configs for the security tests, all inside ``tmp_path``.

    test CA ──signs──▶ server certificate (127.0.0.1, localhost)
            └─signs──▶ client certificates, CN = the MQTT username = the site id

The brokers use the ACL template shipped in ``packaging/mosquitto-acl.conf`` as it is, so the
tests prove the file operators install, not a copy of it.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plantsync.config.model import HubConfig
from plantsync.config.types import Tls
from plantsync.tools.localbroker import Mosquitto

SHIPPED_ACL = Path(__file__).resolve().parents[2] / "packaging" / "mosquitto-acl.conf"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"  # noqa: S105 - a path, not a password
_VALIDITY = timedelta(days=1)

PASSWORDS = {"plant-a": "correct-horse-battery-staple", "hq-integration": "hq-secret-4711"}
"""The users of the password broker: username (the site id) and password."""


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Authority:
    """A CA that issues server and client certificates into ``directory``."""

    name: str
    directory: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_file(self) -> Path:
        return self.directory / f"{self.name}.crt"

    @classmethod
    def create(cls, directory: Path, name: str = "test-ca") -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"plantsync {name}")])
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        authority = cls(name, directory, cert, key)
        authority.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return authority

    def server(self, name: str = "server") -> Identity:
        """A server certificate for 127.0.0.1 and localhost."""
        names = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        return self._issue(name, "localhost", ExtendedKeyUsageOID.SERVER_AUTH, names)

    def client(self, common_name: str) -> Identity:
        """A client certificate whose CN Mosquitto takes as the username."""
        return self._issue(common_name, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, None)

    def _issue(
        self,
        file_name: str,
        common_name: str,
        usage: x509.ObjectIdentifier,
        names: x509.SubjectAlternativeName | None,
    ) -> Identity:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _builder(subject, self.cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names is not None:
            builder = builder.add_extension(names, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        identity = Identity(
            self.directory / f"{file_name}.crt", self.directory / f"{file_name}.key"
        )
        identity.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        identity.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return identity


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def mutual_tls_broker(workdir: Path, authority: Authority, server: Identity) -> Mosquitto:
    """Like packaging/mosquitto-site.conf: client certificates required, CN as username."""
    return identity_broker(workdir, authority, server, acl=SHIPPED_ACL)


def password_broker(
    workdir: Path, authority: Authority, server: Identity, users: dict[str, str]
) -> Mosquitto:
    """TLS without client certificates; users log in with a password (mosquitto_passwd)."""
    workdir.mkdir(parents=True, exist_ok=True)
    password_file = workdir / "passwords"
    password_file.touch(mode=0o600)
    for username, password in users.items():
        subprocess.run(
            [mosquitto_passwd(), "-b", str(password_file), username, password],
            check=True,
            capture_output=True,
            timeout=10,
        )
    return Mosquitto(
        workdir,
        extra_config="\n".join(
            [
                *_tls_listener(authority, server),
                "require_certificate false",
                "use_username_as_clientid true",
                "allow_anonymous false",
                f"password_file {password_file}",
                f"acl_file {SHIPPED_ACL}",
            ]
        ),
    )


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or MOSQUITTO_PASSWD
    if not Path(found).exists():
        raise FileNotFoundError(f"{MOSQUITTO_PASSWD} is needed: sudo apt-get install mosquitto")
    return found


def _tls_listener(authority: Authority, server: Identity) -> list[str]:
    # Mosquitto's generated config opens the listener; these lines apply to it.
    return [
        f"cafile {authority.cert_file}",
        f"certfile {server.cert_file}",
        f"keyfile {server.key_file}",
    ]


def mqtts_url(broker: Mosquitto) -> str:
    return f"mqtts://{broker.host}:{broker.port}"


def identity_broker(
    workdir: Path, authority: Authority, server: Identity, *, acl: Path | None = None
) -> Mosquitto:
    """Client certificates required and the CN as username (so the log names it); without
    ``acl`` a certificate of any CN the CA issued may publish anywhere."""
    return Mosquitto(
        workdir,
        extra_config="\n".join(
            [
                *_tls_listener(authority, server),
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
                *([f"acl_file {acl}"] if acl is not None else []),
            ]
        ),
    )


def hub_as(broker: Mosquitto, authority: Authority, identity: Identity) -> HubConfig:
    """The hub over mutual TLS with ``identity``'s certificate and key files."""
    return HubConfig(
        url=mqtts_url(broker),
        tls=Tls(
            ca_file=authority.cert_file,
            cert_file=identity.cert_file,
            key_file=identity.key_file,
        ),
        keepalive=timedelta(seconds=5),
        connect_timeout=timedelta(seconds=3),
    )

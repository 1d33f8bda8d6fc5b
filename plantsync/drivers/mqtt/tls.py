"""TLS to the hub, and the one place where paho, OS and ssl failures become plantsync errors.

    config.tls ─▶ tls_context() ─▶ ClientContext ─▶ paho: wraps the socket, does the handshake

    failure reason code (CONNACK, PUBACK, SUBACK) ─▶ refusal() ───┐
    exception from connect(), or the OSError paho                 ├─▶ LinkMisconfigured
    logged and swallowed (see network.py) ─────────▶ translate() ─┘   or HubUnavailable

The split is what the supervisor acts on: a hub certificate we do not trust, a client
certificate the hub refuses, bad credentials or a refused topic fail the same way on every
retry, so they are LinkMisconfigured; anything else may pass, so it is HubUnavailable. Most of
the failures worth telling apart are TLS ones, which is why they live beside the SSL context.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from paho.mqtt.client import Client
from paho.mqtt.reasoncodes import ReasonCode

from plantsync.config.types import Tls
from plantsync.drivers.hub import PeerCertificate
from plantsync.errors import HubUnavailable, LinkMisconfigured, PlantsyncError

REFUSED_FOR_GOOD = frozenset(
    {
        0x84,  # unsupported protocol version
        0x85,  # client identifier not valid
        0x86,  # bad user name or password
        0x87,  # not authorized
        0x8A,  # banned
        0x8C,  # bad authentication method
        0x90,  # topic name invalid
        0x99,  # payload format invalid
        0x9A,  # retain not supported
        0x9B,  # QoS not supported
    }
)
"""Reason codes (MQTT 5 numbering; paho maps 3.1.1 codes onto it) that retrying cannot fix."""

CERTIFICATE_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    }
)
"""OpenSSL reasons (``SSLError.reason``) for a hub that refused our client certificate."""


def refusal(reason: ReasonCode, what: str) -> PlantsyncError:
    """The error for a failure reason code in a CONNACK, PUBACK or SUBACK."""
    message = f"{what}: {reason}"
    if reason.value in REFUSED_FOR_GOOD:
        return LinkMisconfigured(message)
    return HubUnavailable(message)


def translate(exc: BaseException, what: str) -> PlantsyncError:
    """The one place where paho, OS and ssl exceptions become plantsync errors.

    Callers ``raise translate(exc, ...) from exc`` so the original error stays visible.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LinkMisconfigured(f"{what}: the hub's certificate is not trusted: {exc}")
    if isinstance(exc, ssl.SSLError) and exc.reason in CERTIFICATE_REFUSED:
        return LinkMisconfigured(f"{what}: the hub refused our client certificate: {exc}")
    if isinstance(exc, OSError | ssl.SSLError | ValueError):
        return HubUnavailable(f"{what}: {exc!r}")
    return HubUnavailable(f"{what}: unexpected {exc!r}")


class ClientContext(ssl.SSLContext):
    """Checks the certificate against ``Tls.server_name`` (if set) instead of the host paho
    dials, and keeps the socket it wrapped: paho drops it unclosed when the handshake fails."""

    server_name: str | None = None
    wrapped: ssl.SSLSocket | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        self.wrapped = super().wrap_socket(sock, *args, **kwargs)
        return self.wrapped

    def close_failed_handshake(self, in_use: object) -> None:
        """Close the socket we wrapped unless it is paho's ``in_use`` one (the link is up)."""
        wrapped = self.wrapped
        if wrapped is not None and wrapped is not in_use:
            wrapped.close()


def tls_context(tls: Tls) -> ClientContext:
    """An SSL context from the config; raises LinkMisconfigured for unreadable files."""
    context = ClientContext(ssl.PROTOCOL_TLS_CLIENT)
    context.server_name = tls.server_name
    try:
        if tls.ca_file is None:
            context.load_default_certs()
        else:
            context.load_verify_locations(cafile=str(tls.ca_file))
        if tls.cert_file is not None:
            password = tls.key_password.get_secret_value() if tls.key_password else None
            context.load_cert_chain(
                str(tls.cert_file), tls.key_file and str(tls.key_file), password
            )
    except (OSError, ssl.SSLError) as exc:
        raise LinkMisconfigured(f"hub TLS files cannot be used: {exc}") from exc
    # 'ca-only' still verifies the chain (CERT_REQUIRED), it only skips the host name.
    context.check_hostname = tls.verify == "full"
    return context


def presented_certificate(client: Client) -> PeerCertificate | None:
    """The certificate the broker presented on ``client``'s TLS socket (None without TLS, or
    when it cannot be read: its expiry is then unknown, which the connection does not need)."""
    sock = client.socket()
    if not isinstance(sock, ssl.SSLSocket):
        return None
    from cryptography import x509  # here: an agent without TLS (or before READY) needs none

    try:
        der = sock.getpeercert(binary_form=True)
        certificate = x509.load_der_x509_certificate(der) if der else None
    except (OSError, ValueError):
        return None
    if certificate is None:
        return None
    return PeerCertificate(certificate.subject.rfc4514_string(), certificate.not_valid_after_utc)

"""OPC UA plumbing that the source (``drivers.opcua``) and the Job Control sink share.

    new_client(config) ─▶ Client: timeouts, identity, security (the server's certificate
                          checked against the trusted one first, over unsecured discovery)
    map_asyncua_exceptions: asyncua, OS, timeout errors ─▶ LinkMisconfigured | SourceUnavailable

    asyncua publish loop ─▶ LiveQueue.put / heard ─▶ bounded, drop oldest ─▶ LiveQueue.next()
    connection lost / subscription BadTimeout, BadShutdown ─▶ LiveQueue.lost ─▶ next() raises
    no notification and no keep-alive for stall_timeout ──────────────────────▶ next() raises

    close_session: DeleteSubscriptions ─▶ CloseSession, each bounded, then the socket

Both drivers subscribe at the session level, never through ``Client.create_subscription``, so
asyncua's watchdog does not silently re-create a subscription: a lost or silent link surfaces
as SourceUnavailable from ``LiveQueue.next()``, and the agent's supervisor decides what follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError, UaStringParsingError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantsync.config.plant import OpcUaClientConfig, SecurityMode, SecurityPolicy
from plantsync.errors import LinkMisconfigured, PlantsyncError, SourceUnavailable

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

SESSION_TIMEOUT_MS = 120_000
"""How long a server keeps our session after the connection drops. Keeping it only helps
TransferSubscriptions, which no driver uses (the supervisor starts afresh), so it is short: a
server frees an abandoned agent's subscription after two minutes, not asyncua's hour."""

CLOSE_TIMEOUT = 2.0
"""Seconds each step of the farewell (DeleteSubscriptions, CloseSession) may take."""

_MISCONFIGURED = frozenset(
    {
        StatusCodes.BadUserAccessDenied,
        StatusCodes.BadIdentityTokenRejected,
        StatusCodes.BadIdentityTokenInvalid,
        StatusCodes.BadSecurityChecksFailed,
        StatusCodes.BadSecurityPolicyRejected,
        StatusCodes.BadSecurityModeRejected,
        StatusCodes.BadCertificateUntrusted,
        StatusCodes.BadCertificateInvalid,
        StatusCodes.BadCertificateUriInvalid,
        StatusCodes.BadNodeIdUnknown,
        StatusCodes.BadNodeIdInvalid,
        StatusCodes.BadNoMatch,
        StatusCodes.BadBrowseNameInvalid,
        StatusCodes.BadAttributeIdInvalid,
        StatusCodes.BadFilterNotAllowed,
        StatusCodes.BadMonitoredItemFilterUnsupported,
        StatusCodes.BadDeadbandFilterInvalid,
    }
)
"""Status codes that retrying cannot fix: the config or the server's trust list must change."""

_POLICIES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.BASIC256SHA256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.AES128_SHA256_RSAOAEP: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.AES256_SHA256_RSAPSS: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
    SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt,
}


@contextmanager
def map_asyncua_exceptions(link: str, doing: str) -> Iterator[None]:
    """Translate asyncua, OS and timeout errors into plantsync's: the one place that does."""
    try:
        yield
    except PlantsyncError:
        raise
    except UaStatusCodeError as exc:
        error = LinkMisconfigured if exc.code in _MISCONFIGURED else SourceUnavailable
        raise error(f"opcua {link}: {doing}: {exc}") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError, ValueError) as exc:
        # files named in the config that are missing or do not parse (certificates, keys)
        raise LinkMisconfigured(f"opcua {link}: {doing}: {exc}") from exc
    except UaStringParsingError as exc:
        raise LinkMisconfigured(f"opcua {link}: {doing}: {exc}") from exc
    except (OSError, EOFError, UaError) as exc:  # OSError covers TimeoutError, ConnectionError
        raise SourceUnavailable(f"opcua {link}: {doing}: {exc!r}") from exc


def _one(_item: object) -> int:
    return 1


class LiveQueue(Generic[_T]):
    """What one subscription delivers, bounded, and whether its link is still alive.

    asyncua's publish loop calls ``heard()`` for every publish response (a keep-alive carries
    nothing but proves the server alive) and ``put()`` for what a response carries; a lost
    connection or a subscription the server gave up calls ``lost()``. ``next()`` hands out what
    was received, oldest first, and only then raises the loss; when nothing at all is heard for
    ``stall_timeout`` seconds it raises SourceUnavailable ("no <silence> or keep-alive"): a link
    that is connected but silent is as good as lost.

    Overflow policy: drop oldest. ``size`` bounds what is held by weight, each item weighing
    ``weight(item)`` (one by default; a batch of readings weighs its length, so the bound is in
    readings whatever a server puts in one message: a server capping its messages at 10
    notifications must not leave room for a hundredth of what an uncapped one does). The newest
    item is always kept. ``dropped`` counts the weight discarded.
    """

    def __init__(
        self,
        link: str,
        *,
        size: int,
        stall_timeout: float,
        silence: str = "notification",
        weight: Callable[[_T], int] = _one,
    ) -> None:
        self._link, self._size, self._stall_timeout = link, size, stall_timeout
        self._silence, self._weight = silence, weight
        self._items: deque[_T] = deque()
        self._held = 0
        self._wakeup = asyncio.Event()
        self._lost: SourceUnavailable | None = None
        self._last_heard = time.monotonic()
        self.dropped = 0

    def heard(self) -> None:
        """A publish response (data or keep-alive) arrived: the server is alive."""
        self._last_heard = time.monotonic()

    def put(self, item: _T) -> None:
        """Queue ``item`` for ``next()``; when the queue is full the oldest items make room."""
        self._items.append(item)
        self._held += self._weight(item)
        while self._held > self._size and len(self._items) > 1:
            self._drop(self._items.popleft())
        self._wakeup.set()

    def _drop(self, item: _T) -> None:
        weight = self._weight(item)
        self._held -= weight
        self.dropped += weight

    def get_nowait(self) -> _T:
        """The oldest item received, without waiting; asyncio.QueueEmpty when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._take()

    def _take(self) -> _T:
        item = self._items.popleft()
        self._held -= self._weight(item)
        return item

    def lost(self, error: SourceUnavailable) -> None:
        """The link is gone: ``next()`` raises ``error`` once the queued items are taken.

        The first loss wins and is logged; later ones (the close after a drop) are no news.
        """
        if self._lost is None:
            _logger.info("%s", error)
            self._lost = error
        self._wakeup.set()

    async def connection_lost(self, exc: Exception) -> None:
        """For ``Client.connection_lost_callback``: the socket closed or the watchdog gave up."""
        lost = SourceUnavailable(f"opcua {self._link}: connection lost: {exc!r}")
        lost.__cause__ = exc
        self.lost(lost)

    def status_changed(self, status: ua.StatusCode) -> None:
        """A StatusChangeNotification: BadTimeout (the server let the subscription expire) or
        BadShutdown (the client lost it) ends the link."""
        if not status.is_good():
            self.lost(SourceUnavailable(f"opcua {self._link}: subscription {status.name}"))

    async def next(self) -> _T:
        """The next item; items already received are delivered before a loss is raised."""
        while True:
            if self._items:
                return self._take()
            if self._lost is not None:
                raise self._lost
            remaining = self._last_heard + self._stall_timeout - time.monotonic()
            if remaining <= 0:
                self.lost(
                    SourceUnavailable(
                        f"opcua {self._link}: no {self._silence} or keep-alive for "
                        f"{self._stall_timeout:g} s"
                    )
                )
                continue
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                continue  # a keep-alive may have moved _last_heard; the loop re-checks


async def new_client(config: OpcUaClientConfig) -> Client:
    """A client set up from a link's config (timeouts, identity, security), not yet connected.

    Raises LinkMisconfigured when the security settings are incomplete or the server presents
    another certificate than the trusted one (asked over an unsecured discovery channel); the
    certificate and key files are read here, so call it inside ``map_asyncua_exceptions``.
    """
    timeout = config.request_timeout.total_seconds()
    # The watchdog probe reads ServerState once per interval with that interval as its
    # timeout: tie it to request_timeout so a loaded server is not declared dead in 1 s.
    client = Client(config.endpoint, timeout=timeout, watchdog_intervall=timeout)
    client.name = client.description = f"plantsync {config.name}"
    client.session_timeout = SESSION_TIMEOUT_MS
    if config.username is not None and config.password is not None:
        client.set_user(config.username)
        client.set_password(config.password.get_secret_value())
    if config.security_mode is not SecurityMode.NONE:
        await _secure(client, config)
    return client


async def close_session(client: Client, subscription_ids: Sequence[int]) -> None:
    """Delete the subscriptions and close the session, each step bounded and its failure no
    news (the link may be gone); the socket is closed whatever happens."""
    try:
        if subscription_ids:
            await quietly(client.uaclient.session.delete_subscriptions(list(subscription_ids)))
        await quietly(client.disconnect())
    finally:
        client.disconnect_socket()


async def quietly(awaitable: Awaitable[object]) -> None:
    """A farewell request: bounded, and its failure is no news (the link may be gone)."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await awaitable
    except (OSError, UaError) as exc:
        _logger.debug("opcua close step failed: %r", exc)


async def _secure(client: Client, config: OpcUaClientConfig) -> None:
    if config.certificate is None or config.private_key is None:
        raise LinkMisconfigured(f"opcua {config.name}: security needs certificate, private_key")
    if config.server_certificate is None:
        # asyncua would otherwise fetch the server's certificate and trust it blindly.
        raise LinkMisconfigured(
            f"opcua {config.name}: security_mode {config.security_mode.value} needs "
            "server_certificate (the server certificate this agent trusts)"
        )
    client.application_uri = _application_uri(config.certificate) or client.application_uri
    await client.set_security(
        _POLICIES[config.security_policy],
        certificate=str(config.certificate),
        private_key=str(config.private_key),
        server_certificate=str(config.server_certificate),
        mode=_MODES[config.security_mode],
    )
    await _check_server_certificate(config, config.server_certificate)


async def _check_server_certificate(config: OpcUaClientConfig, trusted_file: Path) -> None:
    """LinkMisconfigured unless the server presents the certificate the config trusts.

    A server with another certificate cannot read our OpenSecureChannel (it is encrypted for
    the trusted one) and never answers it: without asking first over an unsecured discovery
    channel, the link would time out and retry forever without saying why.
    """
    trusted = _load_certificate(trusted_file).public_bytes(Encoding.DER)
    presented = await presented_certificates(config)
    # DER is self-delimiting: a chain whose first certificate is the trusted one starts with it.
    if presented and not any(blob.startswith(trusted) for blob in presented):
        raise LinkMisconfigured(
            f"opcua {config.name}: the server certificate is not trusted: {config.endpoint}"
            f" presents a certificate other than server_certificate {trusted_file}"
        )


async def presented_certificates(config: OpcUaClientConfig) -> set[bytes]:
    """The certificates (DER, a chain's leaf first) the server presents on its endpoints, asked
    over an unsecured discovery channel; call inside ``map_asyncua_exceptions``."""
    timeout = config.request_timeout.total_seconds()
    discovery = Client(config.endpoint, timeout=timeout)
    async with asyncio.timeout(timeout):
        endpoints = await discovery.connect_and_get_server_endpoints()
    return {e.ServerCertificate for e in endpoints if e.ServerCertificate}


def _application_uri(certificate: Path) -> str | None:
    """The URI in the certificate's SubjectAltName: servers check it against the session's."""
    cert = _load_certificate(certificate)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    uris = names.value.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def _load_certificate(path: Path) -> x509.Certificate:
    """A certificate file, PEM or DER."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)

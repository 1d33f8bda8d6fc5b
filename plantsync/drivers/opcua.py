"""OPC UA source: one session, one subscription, readings as the server publishes them.

    __aenter__   connect ─▶ resolve browse paths ─▶ CreateSubscription ─▶ CreateMonitoredItems
                                                                     (monitored_item_batch a call)
    asyncua publish loop ─▶ _on_publish ─▶ bounded queue (drop oldest) ─▶ readings()
    socket closed / BadShutdown / BadTimeout ─────────────────────────▶ readings() raises
    no data change and no keep-alive for stall_timeout ─────────────────▶ readings() raises

The driver reconnects nothing. asyncua's auto-reconnect stays off, and the subscription is
created at the session level rather than through ``Client.create_subscription`` so that the
client's stale-subscription watchdog, which silently re-creates subscriptions, never sees it:
a lost link or a silent server becomes SourceUnavailable, and the agent's supervisor decides.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError, UaStringParsingError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantsync.config.model import (
    Deadband,
    OpcUaClientConfig,
    OpcUaServerConfig,
    SecurityMode,
    SecurityPolicy,
    TagConfig,
)
from plantsync.contracts.machine import Quality, TagScalar
from plantsync.drivers.base import Reading
from plantsync.errors import LinkMisconfigured, PlantsyncError, SourceUnavailable

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")

QUEUE_BATCHES = 100
"""Publish responses held for a slow consumer; beyond this the oldest batch is dropped."""

MAX_NOTIFICATIONS_PER_PUBLISH = 10_000
"""Far above a realistic publishing interval's changes; a small cap (Node-RED's 10) starves
the link, see MEASURED.md. It bounds one batch for servers that honour it."""

SESSION_TIMEOUT_MS = 120_000
"""How long a server keeps our session after the connection drops. Keeping it only helps
TransferSubscriptions, which this driver never uses (the supervisor starts afresh), so it is
short: a server frees an abandoned agent's subscription after two minutes, not asyncua's hour."""

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
_DEADBANDS = {"absolute": ua.DeadbandType.Absolute, "percent": ua.DeadbandType.Percent}


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


@dataclass(frozen=True, slots=True)
class _Item:
    """One monitored item: which tag of which machine, at which node."""

    machine_id: str
    tag: TagConfig
    node_id: ua.NodeId | None = None

    @property
    def label(self) -> str:
        return f"{self.machine_id}.{self.tag.name} ({self.tag.node_id or self.tag.browse_path})"


class OpcUaSource:
    """Reads the configured tags of one OPC UA server through one subscription.

    One instance is one connection: after SourceUnavailable the supervisor makes a new one.

    ``dropped`` counts readings discarded because the consumer fell more than
    ``QUEUE_BATCHES`` publish responses behind (the oldest batch goes first).
    """

    def __init__(self, config: OpcUaServerConfig, *, queue_batches: int = QUEUE_BATCHES) -> None:
        self._config = config
        self._timeout = config.request_timeout.total_seconds()
        self._items = [
            _Item(machine.id, tag) for machine in config.machines for tag in machine.tags
        ]
        self._queue: asyncio.Queue[list[Reading]] = asyncio.Queue(maxsize=queue_batches)
        self._wakeup = asyncio.Event()
        self._lost: SourceUnavailable | None = None
        self._last_heard = time.monotonic()
        self._client: Client | None = None
        self._subscription_id: int | None = None
        self.dropped = 0

    @property
    def name(self) -> str:
        return self._config.name

    async def __aenter__(self) -> Self:
        try:
            with map_asyncua_exceptions(self.name, f"connecting to {self._config.endpoint}"):
                self._client = await self._connect()
            with map_asyncua_exceptions(self.name, "subscribing"):
                self._items = await self._resolve(self._client)
                self._subscription_id = await self._subscribe(self._client)
                await self._monitor(self._client)
        except BaseException:
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    async def readings(self) -> AsyncIterator[list[Reading]]:
        """Batches of readings, one per publish response; the first carry initial values.

        Raises SourceUnavailable when the link drops or goes silent for ``stall_timeout``.
        """
        while True:
            yield await self._next_batch()

    # -- connecting --------------------------------------------------------------------------

    async def _connect(self) -> Client:
        client = await new_client(self._config)
        client.connection_lost_callback = self._on_connection_lost
        self._client = client  # so _close can tear down a half-open connection
        await self._bounded(client.connect())
        return client

    async def _resolve(self, client: Client) -> list[_Item]:
        """Node ids for every item; all browse paths are translated in one request."""
        by_path = [item for item in self._items if item.tag.browse_path is not None]
        translated: dict[str, ua.NodeId] = {}
        if by_path:
            paths = [_browse_path(item.tag.browse_path or "") for item in by_path]
            session = client.uaclient.session
            results = await self._bounded(session.translate_browsepaths_to_nodeids(paths))
            for item, result in zip(by_path, results, strict=True):
                if not result.StatusCode.is_good() or not result.Targets:
                    raise LinkMisconfigured(
                        f"opcua {self.name}: tag {item.label}: browse path not found: "
                        f"{result.StatusCode.name}"
                    )
                translated[item.tag.browse_path or ""] = result.Targets[0].TargetId
        return [
            _Item(
                item.machine_id,
                item.tag,
                translated.get(item.tag.browse_path or "") or _parse_node_id(item.tag),
            )
            for item in self._items
        ]

    async def _subscribe(self, client: Client) -> int:
        config = self._config
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=config.publishing_interval.total_seconds() * 1000,
            RequestedLifetimeCount=config.lifetime_count,
            RequestedMaxKeepAliveCount=config.keepalive_count,
            MaxNotificationsPerPublish=MAX_NOTIFICATIONS_PER_PUBLISH,
            PublishingEnabled=True,
        )
        result = await self._bounded(
            client.uaclient.session.create_subscription(params, callback=self._on_publish)
        )
        _logger.debug(
            "opcua %s: subscription %s, publishing %s ms, keep-alive x%s, lifetime x%s",
            self.name,
            result.SubscriptionId,
            result.RevisedPublishingInterval,
            result.RevisedMaxKeepAliveCount,
            result.RevisedLifetimeCount,
        )
        self._last_heard = time.monotonic()
        return int(result.SubscriptionId)

    async def _monitor(self, client: Client) -> None:
        """CreateMonitoredItems in batches; servers cap the items they accept per call."""
        size = self._config.monitored_item_batch
        for start in range(0, len(self._items), size):
            batch = self._items[start : start + size]
            params = ua.CreateMonitoredItemsParameters(
                SubscriptionId=self._subscription_id,
                # Only the source timestamp is read (a reading's source_time); leaving out the
                # server's saves 8 of 34 bytes and a sixth of the decoding of every data change
                # (python -m bench.micro_ingest), the largest cost in the agent's profile.
                TimestampsToReturn=ua.TimestampsToReturn.Source,
                ItemsToCreate=[
                    self._monitored_item_request(start + offset, item)
                    for offset, item in enumerate(batch)
                ],
            )
            results = await self._bounded(client.uaclient.session.create_monitored_items(params))
            for item, result in zip(batch, results, strict=True):
                if not result.StatusCode.is_good():
                    raise LinkMisconfigured(
                        f"opcua {self.name}: tag {item.label}: cannot monitor node "
                        f"{item.node_id.to_string() if item.node_id else '?'}: "
                        f"{result.StatusCode.name}"
                    )

    def _monitored_item_request(self, handle: int, item: _Item) -> ua.MonitoredItemCreateRequest:
        tag = item.tag
        sampling = tag.sampling_interval or self._config.publishing_interval
        parameters = ua.MonitoringParameters(
            ClientHandle=handle,
            SamplingInterval=sampling.total_seconds() * 1000,
            QueueSize=tag.queue_size,
            DiscardOldest=True,
        )
        if tag.deadband is not None:
            parameters.Filter = _deadband_filter(tag.deadband)
        return ua.MonitoredItemCreateRequest(
            ItemToMonitor=ua.ReadValueId(NodeId=item.node_id, AttributeId=AttributeIds.Value),
            MonitoringMode=ua.MonitoringMode.Reporting,
            RequestedParameters=parameters,
        )

    # -- receiving ---------------------------------------------------------------------------

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Called by asyncua's publish loop for every response, keep-alives included."""
        self._last_heard = time.monotonic()
        batch: list[Reading] = []
        for notification in result.NotificationMessage.NotificationData or []:
            if isinstance(notification, ua.DataChangeNotification):
                batch.extend(self._readings(notification))
            elif isinstance(notification, ua.StatusChangeNotification):
                self._on_status_change(notification.Status)
        if batch:
            self._enqueue(batch)

    def _readings(self, notification: ua.DataChangeNotification) -> Iterator[Reading]:
        for monitored in notification.MonitoredItems:
            if not 0 <= monitored.ClientHandle < len(self._items):
                continue
            item = self._items[monitored.ClientHandle]
            yield _reading(item.machine_id, item.tag.name, monitored.Value)

    def _enqueue(self, batch: list[Reading]) -> None:
        if self._queue.full():
            self.dropped += len(self._queue.get_nowait())
        self._queue.put_nowait(batch)
        self._wakeup.set()

    def _on_status_change(self, status: ua.StatusCode) -> None:
        # BadTimeout: the server let the subscription expire; BadShutdown: the client lost it.
        if not status.is_good():
            self._mark_lost(SourceUnavailable(f"opcua {self.name}: subscription {status.name}"))

    async def _on_connection_lost(self, exc: Exception) -> None:
        lost = SourceUnavailable(f"opcua {self.name}: connection lost: {exc!r}")
        lost.__cause__ = exc
        self._mark_lost(lost)

    def _mark_lost(self, error: SourceUnavailable) -> None:
        if self._lost is None:
            _logger.info("%s", error)
            self._lost = error
        self._wakeup.set()

    async def _next_batch(self) -> list[Reading]:
        """The next batch; readings already received are delivered before a loss is raised."""
        stall = self._config.stall_timeout.total_seconds()
        while True:
            if not self._queue.empty():
                return self._queue.get_nowait()
            if self._lost is not None:
                raise self._lost
            remaining = self._last_heard + stall - time.monotonic()
            if remaining <= 0:
                self._mark_lost(
                    SourceUnavailable(
                        f"opcua {self.name}: no data change or keep-alive for {stall:g} s"
                    )
                )
                continue
            self._wakeup.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                continue  # a keep-alive may have moved _last_heard; the loop re-checks

    # -- closing -----------------------------------------------------------------------------

    async def _close(self) -> None:
        """Delete the subscription and disconnect, each step bounded, whatever the state."""
        client, self._client = self._client, None
        if client is None:
            return
        subscription_id, self._subscription_id = self._subscription_id, None
        try:
            if subscription_id is not None:
                await quietly(client.uaclient.session.delete_subscriptions([subscription_id]))
            await quietly(client.disconnect())
        finally:
            client.disconnect_socket()

    async def _bounded(self, awaitable: Awaitable[_T]) -> _T:
        async with asyncio.timeout(self._timeout):
            return await awaitable


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
    timeout = config.request_timeout.total_seconds()
    discovery = Client(config.endpoint, timeout=timeout)
    async with asyncio.timeout(timeout):
        endpoints = await discovery.connect_and_get_server_endpoints()
    presented = {e.ServerCertificate for e in endpoints if e.ServerCertificate}
    # DER is self-delimiting: a chain whose first certificate is the trusted one starts with it.
    if presented and not any(blob.startswith(trusted) for blob in presented):
        raise LinkMisconfigured(
            f"opcua {config.name}: the server certificate is not trusted: {config.endpoint}"
            f" presents a certificate other than server_certificate {trusted_file}"
        )


async def quietly(awaitable: Awaitable[object]) -> None:
    """A farewell request: bounded, and its failure is no news (the link may be gone)."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await awaitable
    except (OSError, UaError) as exc:
        _logger.debug("opcua close step failed: %r", exc)


def _reading(machine_id: str, tag: str, data: ua.DataValue) -> Reading:
    status = data.StatusCode or ua.StatusCode()
    variant = data.Value
    return Reading(
        machine_id=machine_id,
        tag=tag,
        value=to_scalar(variant.Value if variant is not None else None),
        quality=quality(status.value),
        status_code=int(status.value),
        source_time=_utc(data.SourceTimestamp),
    )


def to_scalar(value: object) -> TagScalar:
    """An OPC UA value as a JSON scalar: enums as their number, text as text."""
    if value is None or isinstance(value, bool | str | float):
        return value
    if isinstance(value, enum.Enum):
        return int(value.value) if isinstance(value.value, int) else str(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, datetime):
        return _as_utc(value).isoformat()
    return str(value)


def quality(status_code: int) -> Quality:
    """The severity bits (30-31) of a StatusCode: 00 good, 01 uncertain, 1x bad."""
    severity = (status_code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    return Quality.UNCERTAIN if severity == 1 else Quality.BAD


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else _as_utc(moment)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # OPC UA DateTime is UTC on the wire
    return moment.astimezone(UTC)


def _deadband_filter(deadband: Deadband) -> ua.DataChangeFilter:
    return ua.DataChangeFilter(
        # The DataChangeFilter default trigger is Status only: values would never be reported.
        Trigger=ua.DataChangeTrigger.StatusValue,
        DeadbandType=_DEADBANDS[deadband.kind],
        DeadbandValue=deadband.value,
    )


def _parse_node_id(tag: TagConfig) -> ua.NodeId:
    return ua.NodeId.from_string(tag.node_id or "")


def _browse_path(path: str) -> ua.BrowsePath:
    """``2:Press1/2:Speed``, followed from the Objects folder along hierarchical references."""
    return ua.BrowsePath(
        StartingNode=ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder)),
        RelativePath=ua.RelativePath.from_string("/" + path),
    )


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

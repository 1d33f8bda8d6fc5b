"""One MQTT connection to the hub, over paho-mqtt, shaped for asyncio.

    event loop thread                          network thread (one per connection, ours)
    ─────────────────                          ─────────────────────────────────────────
    send(batch) ───── one wake-up per batch ─▶ outgoing deque ─▶ client.publish(), within the
                                               window, then select/read/write (paho's loop parts)
    acknowledged() ◀ keys, in batches ◀──────── on_publish (PUBACK); one call_soon_threadsafe
                                               until the keys are taken
    publish() ─ client.publish() + wake-up ──▶ paho's out queue
      future ◀── call_soon_threadsafe ◀──────── on_publish (PUBACK, or QoS 0 written)
    messages() ◀ bounded deque ◀── call_soon_threadsafe ◀ on_message
    wait_closed() ◀──────────────── call_soon_threadsafe ◀ the loop ends (error rc / exception)

A connection is used once: when the link drops, the object is finished and every waiter gets
HubUnavailable. Reconnection, backoff and re-subscribing belong to the agent's supervisor, so
paho never reconnects by itself (we drive paho's ``loop_read``/``loop_write``/``loop_misc``
with our own ``select`` instead of ``loop_forever``).

Paho's in-flight window and queue are switched off: the caller bounds how many publishes are
un-acknowledged (``HubConfig.max_inflight``). Paho rescans its whole window on every PUBACK, so
a large paho window is slower than an application-side one (see MEASURED.md).

Bulk senders (the uplink) use ``send``/``acknowledged``: the network thread publishes their
messages itself, refilling the window as PUBACKs arrive, so a message crosses between threads
only inside a batch. Handing every message over singly costs more CPU than paho itself
(docs/performance.md: ≈ 130 µs per message against ≈ 40 µs for paho alone).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import select
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from plantsync.config.model import HubConfig, MqttProtocol, Tls
from plantsync.drivers.hub import InboundMessage, Outgoing, Will
from plantsync.errors import HubUnavailable, LinkMisconfigured, PlantsyncError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_LOOP_TIMEOUT = 0.5
"""Longest select() in the network thread; bounds how late it notices a stop request."""

_CLOSE_TIMEOUT = 2.0
"""How long __aexit__ waits for DISCONNECT to be written before it abandons the socket."""

_REFUSED_FOR_GOOD = frozenset(
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

_CERTIFICATE_REFUSED = frozenset(
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


def _refusal(reason: ReasonCode, what: str) -> PlantsyncError:
    """The error for a failure reason code in a CONNACK, PUBACK or SUBACK."""
    message = f"{what}: {reason}"
    if reason.value in _REFUSED_FOR_GOOD:
        return LinkMisconfigured(message)
    return HubUnavailable(message)


def _translate(exc: BaseException, what: str) -> PlantsyncError:
    """The one place where paho, OS and ssl exceptions become plantsync errors.

    Callers ``raise _translate(exc, ...) from exc`` so the original error stays visible.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        return LinkMisconfigured(f"{what}: the hub's certificate is not trusted: {exc}")
    if isinstance(exc, ssl.SSLError) and exc.reason in _CERTIFICATE_REFUSED:
        return LinkMisconfigured(f"{what}: the hub refused our client certificate: {exc}")
    if isinstance(exc, OSError | ssl.SSLError | ValueError):
        return HubUnavailable(f"{what}: {exc!r}")
    return HubUnavailable(f"{what}: unexpected {exc!r}")


class _PahoLog(logging.Logger):
    """Paho's logger for one connection: keeps the OSError that ended the link, which paho
    logs and swallows. Never emits; below ERROR (every packet) paho formats nothing."""

    def __init__(self) -> None:
        super().__init__(f"{__name__}.paho", logging.ERROR)
        self.socket_error: OSError | None = None

    def handle(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple):
            errors = [arg for arg in record.args if isinstance(arg, OSError)]
            self.socket_error = errors[-1] if errors else self.socket_error


class _ClientContext(ssl.SSLContext):
    """Checks the certificate against ``Tls.server_name`` (if set) instead of the host paho
    dials, and keeps the socket it wrapped: paho drops it unclosed when the handshake fails."""

    server_name: str | None = None
    wrapped: ssl.SSLSocket | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if self.server_name is not None:
            kwargs["server_hostname"] = self.server_name
        self.wrapped = super().wrap_socket(sock, *args, **kwargs)
        return self.wrapped


def _tls_context(tls: Tls) -> _ClientContext:
    """An SSL context from the config; raises LinkMisconfigured for unreadable files."""
    context = _ClientContext(ssl.PROTOCOL_TLS_CLIENT)
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


class HubConnection:
    """One MQTT connection to the hub: connect, publish, subscribe, receive; never reconnects.

    Use as ``async with HubConnection(config, client_id=...) as hub``. A dropped link is final:
    ``wait_closed()``, ``messages()`` and every pending publish raise HubUnavailable, and the
    supervisor builds a new connection.
    """

    def __init__(
        self,
        config: HubConfig,
        *,
        client_id: str,
        will: Will | None = None,
        clean_start: bool = False,
        manual_ack: bool = False,
        inbound_queue_size: int = 10_000,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._will = will
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        self._inbound: collections.deque[InboundMessage] = collections.deque()
        self._inbound_queue_size = inbound_queue_size
        self.dropped_messages = 0
        """Inbound messages dropped because messages() fell behind (queue full: drop newest)."""
        self._client: Client | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._thread_done: asyncio.Event | None = None
        self._inbound_ready: asyncio.Event | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._subscribes: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._session_present = False
        self._acks: list[tuple[int, ReasonCode]] = []  # from the network thread, in batches
        self._acks_lock = threading.Lock()
        # send()/acknowledged(): the deque is filled by the event loop and emptied by the
        # network thread; ``_sent`` (mid → key) belongs to the network thread alone.
        self._outgoing: collections.deque[Outgoing] = collections.deque()
        self._sent: dict[int, int] = {}
        self._acknowledged: list[int] = []  # guarded by _acks_lock, like the two below
        self._acknowledged_told = False
        self._refused: PlantsyncError | None = None
        self._acknowledgement_ready: asyncio.Event | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._disconnect_reason = "connection lost"  # written by the network thread only
        self._tls_context: _ClientContext | None = None
        self._paho_log = _PahoLog()

    @property
    def session_present(self) -> bool:
        """Whether the broker resumed a stored session (from the CONNACK)."""
        return self._session_present

    @property
    def closed(self) -> bool:
        """True before the connection is up and once it is closed or dropped."""
        return self._done is None or self._done.done()

    async def __aenter__(self) -> Self:
        """Connect and wait for a successful CONNACK within ``config.connect_timeout``."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._connack = loop.create_future()
        self._done = loop.create_future()
        self._thread_done = asyncio.Event()
        self._inbound_ready = asyncio.Event()
        self._acknowledgement_ready = asyncio.Event()
        self._client = self._build_client()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self._thread = threading.Thread(
            target=self._run, name=f"plantsync-mqtt-{self._client_id}", daemon=True
        )
        self._thread.start()
        try:
            async with asyncio.timeout(self._config.connect_timeout.total_seconds()):
                await self._connack
        except TimeoutError as exc:
            await self._shut_down(clean=False)
            raise HubUnavailable(
                f"no CONNACK from {self._config.url} within {self._config.connect_timeout}"
            ) from exc
        except BaseException:
            await self._shut_down(clean=False)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Send DISCONNECT (so the will is not published) and stop the network thread."""
        await self._shut_down(clean=True)

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """Hand a message to paho now; the future resolves on PUBACK (QoS 1) or once written
        (QoS 0), and fails with HubUnavailable if the link drops first.

        Not a coroutine, so the caller can keep a window of publishes in flight.
        """
        client, loop = self._require_open()
        info = client.publish(topic, payload, qos=qos, retain=retain)
        self._wake()
        future: asyncio.Future[None] = loop.create_future()
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            future.set_exception(HubUnavailable(f"publish to {topic!r} failed: {info.rc.name}"))
            return future
        # Safe without a lock: on_publish only *schedules* its result onto this loop, which runs
        # after this method returns, so the future is registered before it can be resolved.
        self._pending[info.mid] = future
        return future

    def send(self, messages: Iterable[Outgoing]) -> None:
        """Queue QoS 1 messages; the network thread publishes them in order while fewer than
        ``config.max_inflight`` of them are un-acknowledged. Their keys come back from
        ``acknowledged()``; after a drop, the keys not returned were not acknowledged.
        """
        self._require_open()
        self._outgoing.extend(messages)
        self._wake()

    def acknowledged(self) -> list[int]:
        """The keys of ``send`` messages acknowledged since the last call, in PUBACK order.

        ``acknowledgement_ready`` is set for half a window of keys, or when nothing else is in
        flight: calling it earlier may return keys it has not signalled yet.

        Once they are all returned, raises the broker's refusal of one (LinkMisconfigured or
        HubUnavailable), if there was one; the refused message's key never comes back.
        """
        assert self._acknowledgement_ready is not None
        with self._acks_lock:
            keys, self._acknowledged = self._acknowledged, []
            self._acknowledged_told = False
            refused = self._refused
        if refused is None:
            self._acknowledgement_ready.clear()  # the next PUBACK sets it again
            return keys
        if keys:
            return keys
        raise refused

    @property
    def acknowledgement_ready(self) -> asyncio.Event:
        """Set when ``acknowledged()`` has something to report; to wait beside other events."""
        if self._acknowledgement_ready is None:
            raise HubUnavailable("not connected")
        return self._acknowledgement_ready

    async def wait_closed(self) -> None:
        """Wait until the link ends: raises HubUnavailable(reason) if it dropped, returns only
        after a clean close by ``__aexit__``."""
        if self._done is None:
            raise HubUnavailable("not connected")
        await asyncio.shield(self._done)

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Subscribe to ``(filter, qos)`` pairs and wait for the SUBACK (connect_timeout).

        A refused filter raises LinkMisconfigured (usually the broker's ACL).
        """
        client, loop = self._require_open()
        rc, mid = client.subscribe(list(filters))
        self._wake()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise HubUnavailable(f"subscribe failed: {rc.name}")
        future: asyncio.Future[list[ReasonCode]] = loop.create_future()
        self._subscribes[mid] = future
        reasons = await self._result_or_closed(future, "SUBACK")
        for (topic_filter, _), reason in zip(filters, reasons, strict=False):
            if reason.is_failure:
                raise _refusal(reason, f"subscription to {topic_filter!r} refused")

    async def messages(self) -> AsyncIterator[InboundMessage]:
        """Messages as they arrive; after a drop the buffered ones are yielded, then
        HubUnavailable is raised. Ends quietly after a clean close."""
        if self._inbound_ready is None or self._done is None:
            raise HubUnavailable("not connected")
        while True:
            while self._inbound:
                yield self._inbound.popleft()
            if self._done.done():
                self._done.result()
                return
            self._inbound_ready.clear()
            # Woken by a new message or by the end of the link: never waits on a dead link.
            await self._inbound_ready.wait()

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a QoS 1 message (manual ack); call only once it is durable locally.

        Raises HubUnavailable when the link is gone: the broker redelivers it in the next
        session, so the caller must be ready to see it again.
        """
        client, _ = self._require_open()
        rc = client.ack(message.mid, message.qos)
        self._wake()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise HubUnavailable(f"ack of message {message.mid} failed: {rc.name}")

    # -- setup ---------------------------------------------------------------------------------

    def _build_client(self) -> Client:
        config = self._config
        v5 = config.protocol is MqttProtocol.V5
        client = Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            # MQTT 5 takes clean_start at connect(); paho refuses clean_session for it.
            clean_session=None if v5 else self._clean_start,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=self._manual_ack,
        )
        client.max_inflight_messages_set(0)
        client.max_queued_messages_set(0)
        client.connect_timeout = config.connect_timeout.total_seconds()
        if config.username is not None:
            password = config.password.get_secret_value() if config.password else None
            client.username_pw_set(config.username, password)
        if config.uses_tls:
            self._tls_context = _tls_context(config.tls or Tls())
            client.tls_set_context(self._tls_context)
        if self._will is not None:
            will = self._will
            client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_socket_open = self._on_socket_open
        client.enable_logger(self._paho_log)
        # With a write callback registered, publish() from the event loop thread only queues
        # the packet and wakes the network thread; otherwise paho writes to the socket from the
        # calling thread, racing the network thread on partial writes (and on the TLS object).
        client.on_socket_register_write = _ignore_socket
        return client

    def _connect_properties(self) -> Properties | None:
        if self._config.protocol is not MqttProtocol.V5:
            return None
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        # clean_start=True behaves like 3.1.1's clean session: the session ends with the link.
        if not self._clean_start:
            properties.SessionExpiryInterval = int(self._config.session_expiry.total_seconds())
        if self._manual_ack:
            # The broker sends at most this many un-acked QoS 1/2 messages: the inbound deque
            # cannot overflow while we hold acks back until messages are durable.
            properties.ReceiveMaximum = min(self._inbound_queue_size, 65535)
        return properties

    # -- the network thread --------------------------------------------------------------------

    def _run(self) -> None:
        """Connect, then drive paho until stopped or the link ends; report the end once."""
        assert self._client is not None
        client, config = self._client, self._config
        error: PlantsyncError | None = None
        try:
            if config.protocol is MqttProtocol.V5:
                client.connect(
                    config.host,
                    config.port,
                    int(config.keepalive.total_seconds()),
                    clean_start=self._clean_start,
                    properties=self._connect_properties(),
                )
            else:
                client.connect(config.host, config.port, int(config.keepalive.total_seconds()))
            rc = self._drive(client)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                error = self._link_error(rc)
        except Exception as exc:  # reported to the event loop, with its cause
            self._close_failed_handshake(client)
            error = _translate(exc, f"connection to {config.url}")
            error.__cause__ = exc
        assert self._wake_reader is not None
        self._wake_reader.close()
        self._notify(self._link_ended, error)

    def _drive(self, client: Client) -> MQTTErrorCode:
        """Paho's ``loop()``, with our wake-up socket in the select and ``send``'s messages
        published from this thread, until stopped or an error code."""
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and not self._stop.is_set():
            rc = self._turn(client)
        return rc

    def _turn(self, client: Client) -> MQTTErrorCode:
        """Refill the window; wait for the socket or a wake-up; read; write; keep alive."""
        if not self._closing.is_set():  # nothing after our DISCONNECT
            self._publish_outgoing(client)
        wake, sock = self._wake_reader, client.socket()
        if wake is None or sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes that select() cannot see.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        writers = [sock] if client.want_write() else []
        readable, _, _ = select.select([sock, wake], writers, [], 0 if pending else _LOOP_TIMEOUT)
        if wake in readable:
            wake.recv(4096)
        rc = client.loop_read() if sock in readable or pending else MQTTErrorCode.MQTT_ERR_SUCCESS
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.want_write():
            rc = client.loop_write()
        return client.loop_misc() if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else rc

    def _publish_outgoing(self, client: Client) -> None:
        """Publish queued ``send`` messages, oldest first, while the window has room."""
        outgoing, sent = self._outgoing, self._sent
        room = self._config.max_inflight - len(sent)
        while outgoing and room > 0:
            key, topic, payload = outgoing.popleft()
            info = client.publish(topic, payload, qos=1)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # The link is going down; its end is reported, and the key never comes back.
                outgoing.appendleft((key, topic, payload))
                return
            sent[info.mid] = key
            room -= 1

    def _close_failed_handshake(self, client: Client) -> None:
        wrapped = self._tls_context.wrapped if self._tls_context else None
        if wrapped is not None and wrapped is not client.socket():
            wrapped.close()

    def _link_error(self, rc: MQTTErrorCode) -> PlantsyncError:
        what = f"{self._config.url}: {self._disconnect_reason} ({rc.name})"
        cause = self._paho_log.socket_error
        if cause is None:
            return HubUnavailable(what)
        # E.g. with TLS 1.3 the hub refuses our certificate only after our handshake ended:
        # the refusal is an alert on the first read, a misconfiguration and not an outage.
        error = _translate(cause, what)
        error.__cause__ = cause
        return error

    def _notify(self, callback: Callable[..., None], *args: object) -> None:
        """Run ``callback(*args)`` in the event loop thread."""
        assert self._loop is not None
        # The loop is only closed after __aexit__ has joined this thread, or when the owner
        # abandoned the connection; then nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._notify(self._connack_received, flags.session_present, reason)

    def _on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        key = self._sent.pop(mid, None)
        if key is not None:
            self._send_acknowledged(key, reason)
            return
        # One event loop wake-up per batch of PUBACKs, not per PUBACK: at thousands per second
        # the cross-thread wake-ups, not the broker, would set the pace.
        with self._acks_lock:
            self._acks.append((mid, reason))
            first = len(self._acks) == 1
        if first:
            self._notify(self._pubacks_received)

    def _send_acknowledged(self, key: int, reason: ReasonCode) -> None:
        # The event loop is told once until it takes the keys, and only for half a window of
        # them or the last one in flight: each wake-up costs it more than a handful of keys.
        with self._acks_lock:
            if reason.is_failure:
                self._refused = self._refused or _refusal(reason, f"publish of {key} refused")
            else:
                self._acknowledged.append(key)
            due = (
                len(self._acknowledged) >= self._config.max_inflight // 2
                or not self._sent
                or self._refused is not None
            )
            tell = due and not self._acknowledged_told
            self._acknowledged_told = self._acknowledged_told or tell
        if tell:
            self._notify(self._acknowledgement_received)

    def _on_subscribe(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._notify(self._suback_received, mid, reasons)

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        inbound = InboundMessage(
            message.topic, bytes(message.payload), message.qos, message.retain, message.mid
        )
        self._notify(self._message_received, inbound)

    def _on_disconnect(
        self,
        client: Client,
        userdata: object,
        flags: DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        by = "the broker" if flags.is_disconnect_packet_from_server else "the network"
        self._disconnect_reason = f"disconnected by {by}: {reason}"

    def _on_socket_open(self, client: Client, userdata: object, sock: Any) -> None:
        # Paho does not set it; without it, a PUBACK waits for Nagle (34 ms → 2.5 ms p50).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- results, in the event loop thread -----------------------------------------------------

    def _connack_received(self, session_present: bool, reason: ReasonCode) -> None:
        assert self._connack is not None
        if self._connack.done():
            return
        if reason.is_failure:
            self._connack.set_exception(_refusal(reason, f"{self._config.url} refused CONNECT"))
        else:
            self._session_present = session_present
            self._connack.set_result(None)

    def _pubacks_received(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
        for mid, reason in acks:
            future = self._pending.pop(mid, None)
            if future is None or future.done():
                continue
            if reason.is_failure:
                future.set_exception(_refusal(reason, f"publish {mid} refused"))
            else:
                future.set_result(None)

    def _acknowledgement_received(self) -> None:
        assert self._acknowledgement_ready is not None
        self._acknowledgement_ready.set()

    def _suback_received(self, mid: int, reasons: list[ReasonCode]) -> None:
        future = self._subscribes.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)

    def _message_received(self, message: InboundMessage) -> None:
        assert self._inbound_ready is not None
        if len(self._inbound) >= self._inbound_queue_size:
            # Drop newest: un-acked, so with manual ack the broker redelivers it next session.
            self.dropped_messages += 1
            if self.dropped_messages == 1:
                logger.warning("inbound queue full (%d): dropping messages", len(self._inbound))
            return
        self._inbound.append(message)
        self._inbound_ready.set()

    def _link_ended(self, error: PlantsyncError | None) -> None:
        """The network thread has finished: fail every waiter, wake every reader."""
        assert self._connack is not None
        assert self._done is not None
        assert self._thread_done is not None
        assert self._inbound_ready is not None
        self._thread_done.set()
        failure = error or HubUnavailable(f"{self._config.url}: connection closed")
        if not self._connack.done():
            self._connack.set_exception(failure)
        if not self._done.done():
            if error is None or self._closing.is_set() or self._stop.is_set():
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
                self._done.exception()  # wait_closed() may never be called: no "never retrieved"
        waiters: list[asyncio.Future[Any]] = [*self._pending.values(), *self._subscribes.values()]
        for future in waiters:
            if not future.done():
                future.set_exception(failure)
        self._pending.clear()
        self._subscribes.clear()
        self._inbound_ready.set()
        if self._acknowledgement_ready is not None:
            self._acknowledgement_ready.set()

    # -- helpers -------------------------------------------------------------------------------

    def _require_open(self) -> tuple[Client, asyncio.AbstractEventLoop]:
        if self.closed or self._client is None or self._loop is None:
            raise HubUnavailable(f"{self._config.url}: connection is closed")
        return self._client, self._loop

    async def _result_or_closed(self, future: asyncio.Future[_T], what: str) -> _T:
        """Wait for a broker reply, the end of the link, or connect_timeout, whichever is first."""
        assert self._done is not None
        timeout = self._config.connect_timeout.total_seconds()
        # _link_ended fails ``future`` too, so waiting on it alone never outlives the link.
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError as exc:
            future.cancel()
            raise HubUnavailable(f"no {what} from {self._config.url} within {timeout}s") from exc

    async def _shut_down(self, *, clean: bool) -> None:
        """Stop the network thread within a bounded time; DISCONNECT first if ``clean``."""
        assert self._client is not None
        assert self._thread_done is not None
        if clean and not self.closed:
            # The thread exits by itself once DISCONNECT is written and paho closes the socket;
            # stopping it now could lose the DISCONNECT and make the broker publish the will.
            self._closing.set()
            self._client.disconnect()
            self._wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._thread_done.wait()
        self._stop.set()
        self._wake()
        with contextlib.suppress(TimeoutError):
            # A thread still inside connect() needs up to connect_timeout to notice.
            async with asyncio.timeout(
                _LOOP_TIMEOUT + self._config.connect_timeout.total_seconds()
            ):
                await self._thread_done.wait()
        if self._wake_writer is not None:
            self._wake_writer.close()  # the network thread closes the other end when it ends
        if self._thread is not None and not self._thread.is_alive():
            # Paho has no public call that closes a socket it still holds (a stop without
            # DISCONNECT); left to __del__ it may be finalised late and warn (ResourceWarning).
            self._client._reset_sockets()

    def _wake(self) -> None:
        """Interrupt the network thread's select(): paho's packets or ours wait to be sent."""
        writer = self._wake_writer
        # Full: a wake-up is pending anyway. Closed: the thread is gone.
        with contextlib.suppress(OSError):
            if writer is not None:
                writer.send(b"\0")


def _ignore_socket(client: Client, userdata: object, sock: Any) -> None:
    """See HubConnection._build_client: registering it is what matters."""

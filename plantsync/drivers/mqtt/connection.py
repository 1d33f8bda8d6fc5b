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

Entering connects: with ``hub.protocol = "auto"`` that may take two CONNECTs, one paho client
and network thread each (MQTT 5, then 3.1.1 at once; ``negotiation.py`` says when). A
connection is used once: when the link drops, the object is finished and every waiter gets
HubUnavailable. Reconnection, backoff and re-subscribing belong to the agent's supervisor, so
paho never reconnects by itself (we drive paho's ``loop_read``/``loop_write``/``loop_misc``
with our own ``select`` instead of ``loop_forever``).

This module is the event loop's side; ``network.py`` is the network thread's, ``window.py``
the publishes on their way to a PUBACK, ``inbound.py`` the bounded deque behind messages(),
``negotiation.py`` the CONNECT/CONNACK exchange and the version offered.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Self, TypeVar

from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.config.types import Tls
from plantsync.drivers.hub import InboundMessage, Outgoing, PeerCertificate, Will
from plantsync.drivers.mqtt.client import connect, new_client
from plantsync.drivers.mqtt.failover import UrlOrder
from plantsync.drivers.mqtt.inbound import InboundQueue, inbound_message
from plantsync.drivers.mqtt.negotiation import Handshake, ProtocolChoice
from plantsync.drivers.mqtt.network import LOOP_TIMEOUT, NetworkThread
from plantsync.drivers.mqtt.tls import ClientContext, presented_certificate, refusal, tls_context
from plantsync.drivers.mqtt.window import PublishWindow
from plantsync.errors import HubUnavailable, PlantsyncError

_T = TypeVar("_T")

_CLOSE_TIMEOUT = 2.0
"""How long __aexit__ waits for DISCONNECT to be written before it abandons the socket."""


class HubConnection:
    """One MQTT connection to the hub: connect, publish, subscribe, receive; never reconnects.

    Use as ``async with HubConnection(config, client_id=...) as hub``. A dropped link is final:
    ``wait_closed()``, ``messages()`` and every pending publish raise HubUnavailable, and the
    supervisor builds a new connection. ``protocols`` is shared by the connections of one
    process, so each starts with the version the broker accepted last.
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
        protocols: ProtocolChoice | None = None,
        endpoints: UrlOrder | None = None,
        maximum_packet_size: int | None = None,
    ) -> None:
        self._maximum_packet_size = maximum_packet_size  # MQTT 5 only; see client.py
        self._base = config
        self._config = config  # the URL being tried, then the one in use
        self._endpoints = endpoints or UrlOrder(config.urls)
        self._protocols = protocols or ProtocolChoice(config.protocol)
        self._protocol: MqttProtocol | None = None
        self._client_id = client_id
        self._will = will
        self._clean_start = clean_start
        self._manual_ack = manual_ack
        self._window = PublishWindow(config.max_inflight, self._notify)
        self._inbound = InboundQueue(inbound_queue_size)
        self._client: Client | None = None
        self._network: NetworkThread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handshake: Handshake | None = None
        self._done: asyncio.Future[None] | None = None
        self._thread_done: asyncio.Event | None = None
        self._subscribes: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._session_present = False
        self._tls_context: ClientContext | None = None
        self.peer_certificate: PeerCertificate | None = None
        """``Hub.peer_certificate``: what the broker presented, read at CONNACK."""

    @property
    def url(self) -> str:
        """The hub URL this connection reached (or is trying): one node of a list."""
        return self._config.url

    @property
    def protocol(self) -> MqttProtocol | None:
        """The MQTT version the broker accepted (never AUTO); None before it did."""
        return self._protocol

    @property
    def peer(self) -> str:
        """``Hub.peer``: the node reached and the MQTT version it accepted."""
        version = self._protocol.value if self._protocol is not None else "?"
        return f"{self.url} (MQTT {version})"

    @property
    def protocol_version(self) -> str:
        """``Hub.protocol_version``: the MQTT version the broker accepted ("?" before)."""
        return self._protocol.value if self._protocol is not None else "?"

    @property
    def session_present(self) -> bool:
        """Whether the broker resumed a stored session (from the CONNACK)."""
        return self._session_present

    @property
    def closed(self) -> bool:
        """True before the connection is up and once it is closed or dropped."""
        return self._done is None or self._done.done()

    @property
    def dropped_messages(self) -> int:
        """Inbound messages dropped because messages() fell behind (queue full: drop newest)."""
        return self._inbound.dropped

    async def __aenter__(self) -> Self:
        """Connect and wait for a successful CONNACK, each version offered within
        ``config.connect_timeout``; with "auto", MQTT 3.1.1 when the broker does not accept 5."""
        self._loop = asyncio.get_running_loop()
        await self._endpoints.connect(self._base, self._connect_to)
        return self

    async def _connect_to(self, config: HubConfig) -> None:
        """One URL of the hub: the MQTT versions to offer it, one CONNECT each."""
        self._config = config
        self._protocol, self._session_present = await self._protocols.connect(config, self._connect)

    async def _connect(self, protocol: MqttProtocol, probe: float | None) -> bool:
        """One CONNECT with ``protocol``, on a paho client and network thread of its own;
        returns "session present". A failed attempt leaves no thread behind."""
        assert self._loop is not None
        self._handshake = Handshake(self._loop, self._config.url, protocol)
        self._done = self._loop.create_future()
        self._thread_done = asyncio.Event()
        self._window.ready.clear()  # a failed attempt before this one set it
        self._client = self._build_client(protocol)
        self._network = self._network_thread(self._client, self._handshake)
        self._network.start()
        try:
            return await self._handshake.accepted(self._config.connect_timeout, probe)
        except BaseException:
            await self._shut_down(clean=False)
            raise

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
        self._window.expect(info.mid, future)
        return future

    def send(self, messages: Iterable[Outgoing], *, backfill: bool = False) -> None:
        """Queue QoS 1 messages; the network thread publishes them in order while fewer than
        ``config.max_inflight`` of them are un-acknowledged. Their keys come back from
        ``acknowledged()``; after a drop, the keys not returned were not acknowledged.
        ``backfill`` messages wait behind every other one queued (``Hub.send``).
        """
        self._require_open()
        self._window.send(messages, backfill=backfill)
        self._wake()

    def acknowledged(self) -> list[int]:
        """The keys of ``send`` messages acknowledged since the last call, in PUBACK order.

        ``acknowledgement_ready`` is set for half a window of keys, or when nothing else is in
        flight: calling it earlier may return keys it has not signalled yet.

        Once they are all returned, raises the broker's refusal of one (LinkMisconfigured or
        HubUnavailable), if there was one; the refused message's key never comes back.
        """
        return self._window.acknowledged()

    @property
    def acknowledgement_ready(self) -> asyncio.Event:
        """Set when ``acknowledged()`` has something to report; to wait beside other events."""
        if self._loop is None:
            raise HubUnavailable("not connected")
        return self._window.ready

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
                raise refusal(reason, f"subscription to {topic_filter!r} refused")

    async def messages(self) -> AsyncIterator[InboundMessage]:
        """Messages as they arrive; after a drop the buffered ones are yielded, then
        HubUnavailable is raised. Ends quietly after a clean close."""
        if self._done is None:
            raise HubUnavailable("not connected")
        while (message := await self._inbound.get(self._done)) is not None:
            yield message

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

    # -- setup -------------------------------------------------------------------------------

    def _build_client(self, protocol: MqttProtocol) -> Client:
        config = self._config
        if config.uses_tls and self._tls_context is None:
            self._tls_context = tls_context(config.tls or Tls())
        client = new_client(
            config,
            protocol=protocol,
            client_id=self._client_id,
            clean_start=self._clean_start,
            manual_ack=self._manual_ack,
            will=self._will,
            tls_context=self._tls_context,
        )
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _network_thread(self, client: Client, handshake: Handshake) -> NetworkThread:
        def connect_now() -> None:
            connect(
                client,
                self._config,
                protocol=handshake.protocol,
                clean_start=self._clean_start,
                manual_ack=self._manual_ack,
                receive_maximum=self._inbound.size,
                maximum_packet_size=self._maximum_packet_size,
            )
            self._notify(handshake.sent)

        return NetworkThread(
            client,
            name=f"plantsync-mqtt-{self._client_id}",
            url=self._config.url,
            connect=connect_now,
            window=self._window,
            tls_context=self._tls_context,
            ended=functools.partial(self._notify, self._link_ended, handshake),
        )

    def _notify(self, callback: Callable[..., None], *args: object) -> None:
        """Run ``callback(*args)`` in the event loop thread."""
        assert self._loop is not None
        # The loop is only closed after __aexit__ has joined this thread, or when the owner
        # abandoned the connection; then nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    # -- paho's callbacks, in the network thread ------------------------------------------------

    def _on_connect(
        self,
        client: Client,
        userdata: object,
        flags: ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.peer_certificate = presented_certificate(client)
        self._notify(self._connack_received, client, flags.session_present, reason)

    def _on_publish(
        self,
        client: Client,
        userdata: object,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        self._window.puback(mid, reason)

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
        self._notify(self._inbound.put, inbound_message(message))

    # -- results, in the event loop thread -----------------------------------------------------

    def _connack_received(self, client: Client, session_present: bool, reason: ReasonCode) -> None:
        if client is self._client and self._handshake is not None:  # not a failed attempt's
            self._handshake.connack(session_present, reason)

    def _suback_received(self, mid: int, reasons: list[ReasonCode]) -> None:
        future = self._subscribes.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)

    def _link_ended(self, handshake: Handshake, error: PlantsyncError | None) -> None:
        """The network thread has finished: fail every waiter, wake every reader."""
        if handshake is not self._handshake:
            return  # a failed attempt's thread, ending after its wait gave up on it
        assert self._done is not None
        assert self._thread_done is not None
        assert self._network is not None
        self._thread_done.set()
        if error is not None and self._protocol is not None and not self._network.stopping:
            self._endpoints.dropped(self._config.url)  # it was up: the next connect tries on
        failure = error or HubUnavailable(f"{self._config.url}: connection closed")
        handshake.ended(failure)
        if not self._done.done():
            if error is None or self._network.stopping:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
                self._done.exception()  # wait_closed() may never be called: no "never retrieved"
        self._window.fail(failure)
        for future in self._subscribes.values():
            if not future.done():
                future.set_exception(failure)
        self._subscribes.clear()
        self._inbound.wake()
        self._window.ready.set()

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
        assert self._network is not None
        if clean and not self.closed:
            # The thread exits by itself once DISCONNECT is written and paho closes the socket;
            # stopping it now could lose the DISCONNECT and make the broker publish the will.
            self._network.stop_publishing()
            self._client.disconnect()
            self._network.wake()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await self._thread_done.wait()
        self._network.stop()
        with contextlib.suppress(TimeoutError):
            # A thread still inside connect() needs up to connect_timeout to notice.
            async with asyncio.timeout(LOOP_TIMEOUT + self._config.connect_timeout.total_seconds()):
                await self._thread_done.wait()
        self._network.close()
        if not self._network.is_alive():
            # Paho has no public call that closes a socket it still holds (a stop without
            # DISCONNECT); left to __del__ it may be finalised late and warn (ResourceWarning).
            self._client._reset_sockets()

    def _wake(self) -> None:
        """Interrupt the network thread's select(): paho's packets or ours wait to be sent."""
        if self._network is not None:
            self._network.wake()

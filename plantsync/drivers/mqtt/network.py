"""The network thread: one per connection, ours, driving paho in place of ``loop_forever``.

    start() ─▶ connect() ─▶ each turn: refill the publish window (unless disconnecting)
                                       select(paho's socket, our wake-up socket)
                                       loop_read ─ loop_write ─ loop_misc
                            ... until stop() or an error code from paho
    wake() ── one byte on a socketpair ─▶ select() returns now: packets wait to be written
    ended(error or None) ◀── once, from the thread, after it has closed its end of the socketpair

Paho's ``loop_forever`` is not used: paho would reconnect by itself, and each turn must also
refill the publish window from this thread; so we call paho's loop parts around our own
``select``, which our wake-up socket interrupts. How the link ended is this thread's to tell:
paho's disconnect reason, the socket error paho logged and swallowed, or the exception
``connect`` raised; ``tls.translate`` turns each into a plantsync error.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
from collections.abc import Callable

from paho.mqtt.client import Client, DisconnectFlags
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from plantsync.drivers.mqtt.tls import ClientContext, translate
from plantsync.drivers.mqtt.window import PublishWindow
from plantsync.errors import HubUnavailable, PlantsyncError

LOOP_TIMEOUT = 0.5
"""Longest select() in the network thread; bounds how late it notices a stop request."""


class PahoLog(logging.Logger):
    """Paho's logger for one connection: keeps the OSError that ended the link, which paho
    logs and swallows. Never emits; below ERROR (every packet) paho formats nothing."""

    def __init__(self) -> None:
        super().__init__(f"{__name__}.paho", logging.ERROR)
        self.socket_error: OSError | None = None

    def handle(self, record: logging.LogRecord) -> None:
        if isinstance(record.args, tuple):
            errors = [arg for arg in record.args if isinstance(arg, OSError)]
            self.socket_error = errors[-1] if errors else self.socket_error


class NetworkThread:
    """The thread that connects one paho client and drives it until the link ends.

    It registers paho's ``on_disconnect`` and logger on the client: both only serve to tell
    how the link ended. ``ended`` is called once, from the thread, with the error every waiter
    should get (None when the link ended without one).
    """

    def __init__(
        self,
        client: Client,
        *,
        name: str,
        url: str,
        connect: Callable[[], None],
        window: PublishWindow,
        tls_context: ClientContext | None,
        ended: Callable[[PlantsyncError | None], None],
    ) -> None:
        self._client = client
        self._url = url
        self._connect = connect
        self._window = window
        self._tls_context = tls_context
        self._ended = ended
        self._paho_log = PahoLog()
        self._disconnect_reason = "connection lost"  # written by the network thread only
        client.enable_logger(self._paho_log)
        client.on_disconnect = self._on_disconnect
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_writer.setblocking(False)
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # -- the event loop thread -----------------------------------------------------------------

    def start(self) -> None:
        """Start the thread: it connects, then drives paho until the link ends."""
        self._thread.start()

    def wake(self) -> None:
        """Interrupt the thread's select(): paho's packets or ours wait to be sent."""
        # Full: a wake-up is pending anyway. Closed: the thread is gone.
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")

    def stop_publishing(self) -> None:
        """Publish nothing more from the window: our DISCONNECT comes next, then the end."""
        self._closing.set()

    def stop(self) -> None:
        """End at the next turn, DISCONNECT written or not."""
        self._stop.set()
        self.wake()

    @property
    def stopping(self) -> bool:
        """Whether we asked for the end (so an error on the way out is not a drop)."""
        return self._closing.is_set() or self._stop.is_set()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Close our end of the wake-up socket; the thread closes the other when it ends."""
        self._wake_writer.close()

    # -- the network thread --------------------------------------------------------------------

    def _run(self) -> None:
        """Connect, then drive paho until stopped or the link ends; report the end once."""
        client = self._client
        error: PlantsyncError | None = None
        try:
            self._connect()
            rc = self._drive(client)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                error = self._link_error(rc)
        except Exception as exc:  # reported to the event loop, with its cause
            if self._tls_context is not None:
                self._tls_context.close_failed_handshake(client.socket())
            error = translate(exc, f"connection to {self._url}")
            error.__cause__ = exc
        self._wake_reader.close()
        self._ended(error)

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
            self._window.publish_outgoing(client)
        wake, sock = self._wake_reader, client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        # TLS may hold decrypted bytes that select() cannot see.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        writers = [sock] if client.want_write() else []
        readable, _, _ = select.select([sock, wake], writers, [], 0 if pending else LOOP_TIMEOUT)
        if wake in readable:
            wake.recv(4096)
        rc = client.loop_read() if sock in readable or pending else MQTTErrorCode.MQTT_ERR_SUCCESS
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and client.want_write():
            rc = client.loop_write()
        return client.loop_misc() if rc == MQTTErrorCode.MQTT_ERR_SUCCESS else rc

    def _link_error(self, rc: MQTTErrorCode) -> PlantsyncError:
        what = f"{self._url}: {self._disconnect_reason} ({rc.name})"
        cause = self._paho_log.socket_error
        if cause is None:
            return HubUnavailable(what)
        # E.g. with TLS 1.3 the hub refuses our certificate only after our handshake ended:
        # the refusal is an alert on the first read, a misconfiguration and not an outage.
        error = translate(cause, what)
        error.__cause__ = cause
        return error

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

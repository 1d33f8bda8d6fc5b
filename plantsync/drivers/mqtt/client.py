"""The paho client as the config asks for it, with paho's own machinery switched off.

    HubConfig + version + session options ─▶ new_client() ─▶ paho Client (no result callbacks)
                                            connect()    ─▶ CONNECT, from the network thread

The version is the one being tried (``negotiation.py``), never ``config.protocol``, which may
be "auto". On 3.1.1 a persistent session is clean session off; session expiry, Receive
Maximum and Maximum Packet Size exist only in MQTT 5 (see ``inbound.py`` for what bounds the
inbound queue there).

Maximum Packet Size: the broker does not send a packet larger than this to the client; it
drops it (Mosquitto logs it; the message is gone for this session). The agent sets it a
little above its largest down message (``maximum_packet_size``), so a message somewhat over
the limit still arrives and is answered with a rejection that names its size, id and hash,
while one far beyond it is never read into memory; the seq it took shows as a gap, and the
agent asks HQ for a snapshot. On 3.1.1 the agent's own size check is the only guard: the
client reads every packet whole first.

What is switched off, and why:
- reconnecting: the agent's supervisor owns reconnection and backoff, so a drop stays visible;
- paho's in-flight window and queue: the caller keeps the window (``window.py``); paho rescans
  its whole window on every PUBACK;
- writing from the caller's thread: with a write callback registered, ``publish`` only queues
  the packet, and the network thread alone writes to the socket;
- Nagle's algorithm: each small PUBACK would otherwise wait for it.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from paho.mqtt.client import Client
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.drivers.hub import Will

PACKET_OVERHEAD = 64 * 1024
"""Room above the largest down message for the rest of a PUBLISH packet: fixed header, topic
(at most 64 KiB by the protocol) and properties."""

LARGEST_PACKET = 268_435_455
"""The largest packet MQTT can express (its variable byte integer's maximum)."""


def maximum_packet_size(max_message_bytes: int) -> int:
    """The MQTT 5 Maximum Packet Size for a client whose largest message is
    ``max_message_bytes``: so much, plus ``PACKET_OVERHEAD``."""
    return min(max_message_bytes + PACKET_OVERHEAD, LARGEST_PACKET)


def new_client(
    config: HubConfig,
    *,
    protocol: MqttProtocol,
    client_id: str,
    clean_start: bool,
    manual_ack: bool,
    will: Will | None,
    tls_context: ssl.SSLContext | None,
) -> Client:
    """A paho client for one session; callbacks for results are the caller's to register."""
    v5 = protocol is MqttProtocol.V5
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        # MQTT 5 takes clean_start at connect(); paho refuses clean_session for it.
        clean_session=None if v5 else clean_start,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        reconnect_on_failure=False,
        manual_ack=manual_ack,
    )
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.connect_timeout = config.connect_timeout.total_seconds()
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    if tls_context is not None:
        client.tls_set_context(tls_context)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    client.on_socket_open = _no_delay
    # With a write callback registered, publish() from the event loop thread only queues
    # the packet and wakes the network thread; otherwise paho writes to the socket from the
    # calling thread, racing the network thread on partial writes (and on the TLS object).
    client.on_socket_register_write = _ignore_socket
    return client


def connect(
    client: Client,
    config: HubConfig,
    *,
    protocol: MqttProtocol,
    clean_start: bool,
    manual_ack: bool,
    receive_maximum: int,
    maximum_packet_size: int | None = None,
) -> None:
    """Open the socket and send CONNECT; blocks, so only the network thread calls it."""
    keepalive = int(config.keepalive.total_seconds())
    if protocol is MqttProtocol.V5:
        properties = _connect_properties(
            config, clean_start=clean_start, manual_ack=manual_ack, receive_maximum=receive_maximum
        )
        if maximum_packet_size is not None:
            properties.MaximumPacketSize = maximum_packet_size
        client.connect(
            config.host, config.port, keepalive, clean_start=clean_start, properties=properties
        )
    else:
        client.connect(config.host, config.port, keepalive)


def _connect_properties(
    config: HubConfig, *, clean_start: bool, manual_ack: bool, receive_maximum: int
) -> Properties:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # clean_start=True behaves like 3.1.1's clean session: the session ends with the link.
    if not clean_start:
        properties.SessionExpiryInterval = int(config.session_expiry.total_seconds())
    if manual_ack:
        # The broker sends at most this many un-acked QoS 1/2 messages: the inbound queue
        # cannot overflow while we hold acks back until messages are durable.
        properties.ReceiveMaximum = min(receive_maximum, 65535)
    return properties


def _no_delay(client: Client, userdata: object, sock: Any) -> None:
    # Paho does not set it; without it, a PUBACK waits for Nagle (34 ms → 2.5 ms p50).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _ignore_socket(client: Client, userdata: object, sock: Any) -> None:
    """See new_client: registering it is what matters."""

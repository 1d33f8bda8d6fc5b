"""The hub-side seam: what the agent needs of one session with the central hub.

    Uplink ──send(batch)──▶ Hub ──▶ broker          acknowledged() ◀── PUBACKs, by key
    Agent  ──publish()────▶ Hub ──▶ broker          (status: one future per message)
    Agent  ◀─messages()──── Hub ◀── broker          ack(message) once it is durable locally

``drivers.mqtt.HubConnection`` implements it over paho-mqtt; a test fake or a second transport
implements the same Protocol, and nothing in ``plantsync.agent`` names a concrete transport.
A Hub object is one session: when the link drops, every waiter gets HubUnavailable and the
supervisor builds a new one through a ``HubFactory``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from plantsync.drivers.base import Connection

Outgoing = tuple[int, str, bytes]
"""A message for ``Hub.send``: (the caller's key for it, topic, payload)."""


@dataclass(frozen=True)
class Will:
    """The last will: published by the broker when the connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True)
class InboundMessage:
    """A message the hub delivered on one of our subscriptions."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int


@dataclass(frozen=True)
class PeerCertificate:
    """The certificate the hub's broker presented in the TLS handshake (its own, the leaf)."""

    subject: str
    not_after: datetime


class Hub(Connection, Protocol):
    """One session with the hub: entered to connect (CONNACK within the connect timeout), left
    to disconnect cleanly (DISCONNECT: the broker does not publish the will).

    Every method raises HubUnavailable once the link has dropped, LinkMisconfigured when the
    broker refuses for a reason retrying cannot fix.
    """

    @property
    def session_present(self) -> bool:
        """Whether the broker resumed a stored session (queued down messages survive)."""
        ...

    @property
    def peer(self) -> str:
        """What the session is connected to, for people: the node and the protocol version."""
        ...

    @property
    def protocol_version(self) -> str:
        """The protocol version the hub accepted, for metrics: e.g. ``5`` or ``3.1.1``."""
        ...

    @property
    def peer_certificate(self) -> PeerCertificate | None:
        """The broker's certificate, read from the TLS socket at connect; None without TLS."""
        ...

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> None:
        """Subscribe to ``(filter, qos)`` pairs and wait for the broker's answer."""
        ...

    def publish(
        self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
    ) -> asyncio.Future[None]:
        """One message now; the future resolves once the broker has it (PUBACK for QoS 1)."""
        ...

    def send(self, messages: Iterable[Outgoing], *, backfill: bool = False) -> None:
        """Queue QoS 1 messages for publishing in order within the hub's in-flight window.

        ``backfill`` messages (the backlog of an outage) are published only while no other
        ``send`` message waits: live ones overtake them in the queue, never in the window.
        """
        ...

    def acknowledged(self) -> list[int]:
        """Keys of ``send`` messages the broker acknowledged since the last call, in order.

        Once every acknowledged key is returned, raises the broker's refusal of a message, if
        there was one.
        """
        ...

    @property
    def acknowledgement_ready(self) -> asyncio.Event:
        """Set when ``acknowledged()`` has keys to report, or the link ended."""
        ...

    async def wait_closed(self) -> None:
        """Return after a clean close; raise HubUnavailable when the link dropped."""
        ...

    def messages(self) -> AsyncIterator[InboundMessage]:
        """Messages on our subscriptions as they arrive; HubUnavailable after a drop."""
        ...

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a delivered message (manual ack), once it is durable locally."""
        ...


HubFactory = Callable[[Will], Hub]
"""Builds a new, unconnected hub session with the given last will; the composition root binds
the transport, its config and the client id."""

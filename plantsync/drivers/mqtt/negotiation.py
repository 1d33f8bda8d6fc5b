"""Which MQTT version to offer the hub, and what a CONNECT that got no CONNACK says about it.

    hub.protocol "5" / "3.1.1" ─▶ that version only; whatever the broker answers is final
    hub.protocol "auto"        ─▶ the version this URL accepted last (MQTT 5 until one did),
                                  then at once the other, within the same connect attempt

    network thread: connect() returned ─▶ Handshake.sent()       our CONNECT is on its way
                    CONNACK            ─▶ Handshake.connack()    accepted, or a reason code
                    the link ended     ─▶ Handshake.ended()      before any CONNACK
    event loop:     Handshake.accepted(timeout, probe) ─▶ session present, or the failure

A broker that does not speak MQTT 5 says so in one of three ways, and the brokers HQ runs show
all three: aedes refuses the version in its CONNACK (0x84; a 3.1.1 CONNACK with return code 1,
which paho reads as 0x84), RabbitMQ closes the socket without a CONNACK, amqtt never answers.
Each of them counts as "not this version" (``ProtocolNotAccepted``) only once our CONNECT was
sent, and only while another version remains to be tried: a refused TCP connection, a TLS
failure or a refused login say nothing about the version and fail the attempt as they are.
Silence is cut short by the probe timeout, counted from when CONNECT was sent, so the TCP and
TLS handshakes do not eat into it: a broker that speaks the version answers in milliseconds.

What is remembered: the version each URL accepted, for the life of the process (the agent's
reconnects; a hub tool connects once). MQTT 5 is offered again only when the remembered 3.1.1
did not get a CONNACK in one of the three ways (another broker now answers at that URL), or
after the process restarts. A failure that says nothing about the version forgets nothing, so
a broker restart costs no probe. The price of the probe: a broker that speaks MQTT 5 but takes
longer than PROBE_TIMEOUT to answer CONNECT is reached over 3.1.1, and stays so until 3.1.1
fails or the agent restarts; it still works, without what MQTT 5 adds (session expiry,
Receive Maximum, reason codes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from paho.mqtt.reasoncodes import ReasonCode

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.drivers.mqtt.tls import refusal
from plantsync.errors import HubUnavailable, LinkMisconfigured, PlantsyncError

UNSUPPORTED_PROTOCOL_VERSION = 0x84
"""CONNACK reason code (MQTT 5 numbering) for a version the broker does not speak."""

PROBE_TIMEOUT = 3.0
"""Longest wait for a CONNACK once CONNECT is sent, when another version can still be tried."""

_OTHER = {MqttProtocol.V5: MqttProtocol.V311, MqttProtocol.V311: MqttProtocol.V5}

Attempt = Callable[[MqttProtocol, float | None], Awaitable[bool]]
"""One CONNECT with a version, and the probe timeout when another follows: "session present"
on a successful CONNACK, ProtocolNotAccepted when the broker does not speak the version."""


class ProtocolNotAccepted(HubUnavailable):
    """The broker did not accept this MQTT version; another one is tried at once."""

    def __init__(self, protocol: MqttProtocol, reason: str) -> None:
        super().__init__(f"MQTT {protocol.value} not accepted: {reason}")
        self.protocol = protocol


class ProtocolChoice:
    """The versions to offer each hub URL, and the one it accepted last; the connections of
    one process share one (``app.mqtt_hub``), event loop only."""

    def __init__(self, setting: MqttProtocol) -> None:
        self.setting = setting
        self._accepted: dict[str, MqttProtocol] = {}

    def candidates(self, url: str) -> tuple[MqttProtocol, ...]:
        """The versions to offer, in order: one, or two when negotiating."""
        if self.setting is not MqttProtocol.AUTO:
            return (self.setting,)
        first = self._accepted.get(url, MqttProtocol.V5)
        return (first, _OTHER[first])

    def accepted(self, url: str, protocol: MqttProtocol) -> None:
        """``url`` answered ``protocol`` with a successful CONNACK."""
        self._accepted[url] = protocol

    async def connect(self, config: HubConfig, attempt: Attempt) -> tuple[MqttProtocol, bool]:
        """Run ``attempt`` with each candidate version until the broker accepts one; return
        the version and "session present". Only a version that another follows is a probe."""
        candidates = self.candidates(config.url)
        refused: list[ProtocolNotAccepted] = []
        for protocol in candidates:
            probe = probe_timeout(config) if protocol is not candidates[-1] else None
            try:
                session_present = await attempt(protocol, probe)
            except ProtocolNotAccepted as exc:
                refused.append(exc)
                continue
            except PlantsyncError as exc:
                if refused:
                    raise neither_accepted(refused, protocol, exc) from exc
                raise
            self.accepted(config.url, protocol)
            return protocol, session_present
        raise AssertionError("the last version offered is never a probe")

    def negotiated(self, url: str) -> MqttProtocol | None:
        """The version ``url`` accepted last, None before any connection succeeded: for the
        status page and metrics."""
        return self._accepted.get(url)


def probe_timeout(config: HubConfig) -> float:
    """How long a version that may not be spoken gets: at most half the connect timeout."""
    return min(PROBE_TIMEOUT, config.connect_timeout.total_seconds() / 2)


def neither_accepted(
    refused: list[ProtocolNotAccepted], protocol: MqttProtocol, error: PlantsyncError
) -> PlantsyncError:
    """The error of an attempt whose every version failed: the last failure's kind (so the
    supervisor retries, or waits for a fix), with every reason in its message."""
    reasons = "; ".join([*map(str, refused), f"MQTT {protocol.value}: {error}"])
    kind = LinkMisconfigured if isinstance(error, LinkMisconfigured) else HubUnavailable
    return kind(reasons)


class Handshake:
    """One CONNECT and its CONNACK, seen from the event loop; one per version tried."""

    def __init__(self, loop: asyncio.AbstractEventLoop, url: str, protocol: MqttProtocol) -> None:
        self.protocol = protocol
        self._url = url
        self._sent: asyncio.Future[bool] = loop.create_future()
        self._connack: asyncio.Future[bool] = loop.create_future()
        self._refusal: ReasonCode | None = None

    # -- results from the network thread, run in the event loop ------------------------------

    def sent(self) -> None:
        """connect() returned: TCP (and TLS) are up, our CONNECT is queued to be written."""
        if not self._sent.done():
            self._sent.set_result(True)

    def connack(self, session_present: bool, reason: ReasonCode) -> None:
        if self._connack.done():
            return
        if reason.is_failure:
            self._refusal = reason
            self._connack.set_exception(refusal(reason, f"{self._url} refused CONNECT"))
        else:
            self._connack.set_result(session_present)

    def ended(self, failure: PlantsyncError) -> None:
        """The link ended; before a CONNACK, ``failure`` is the attempt's error."""
        if not self._sent.done():
            self._sent.set_result(False)
        if not self._connack.done():
            self._connack.set_exception(failure)
            self._connack.exception()  # the wait may be over already: no "never retrieved"

    # -- the waiting ---------------------------------------------------------------------------

    async def accepted(self, connect_timeout: timedelta, probe: float | None) -> bool:
        """Wait for a successful CONNACK within ``connect_timeout``; return "session present".

        With ``probe`` (another version comes next), a broker that does not accept this one
        raises ProtocolNotAccepted, and silence is cut short ``probe`` seconds after CONNECT.
        Otherwise the broker's answer is raised as it is (LinkMisconfigured, HubUnavailable).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + connect_timeout.total_seconds()
        try:
            async with asyncio.timeout_at(deadline):
                sent = await asyncio.shield(self._sent)
            if sent and probe is not None:
                deadline = min(deadline, loop.time() + probe)
            async with asyncio.timeout_at(deadline):
                return await self._connack
        except TimeoutError as exc:
            if probe is not None and self._was_sent():
                raise ProtocolNotAccepted(self.protocol, f"no CONNACK within {probe:g}s") from exc
            raise HubUnavailable(f"no CONNACK from {self._url} within {connect_timeout}") from exc
        except PlantsyncError as exc:
            if probe is not None and self._says_not_this_version(exc):
                raise ProtocolNotAccepted(self.protocol, str(exc)) from exc
            raise

    def _was_sent(self) -> bool:
        return self._sent.done() and self._sent.result()

    def _says_not_this_version(self, error: PlantsyncError) -> bool:
        if self._refusal is not None:
            return self._refusal.value == UNSUPPORTED_PROTOCOL_VERSION
        # Closed after our CONNECT, before any CONNACK. A TLS alert on the first read (a
        # refused client certificate) is LinkMisconfigured, and says nothing about the version.
        return self._was_sent() and isinstance(error, HubUnavailable)

"""The bounded queue between paho's deliveries and ``HubConnection.messages()``.

    network thread                      event loop thread
    ──────────────                      ─────────────────
    on_message ─▶ inbound_message() ──▶ put() ─▶ bounded deque ─▶ get() ─▶ messages()
                  (call_soon_threadsafe)   full: drop the newest, count it

Overflow policy: drop the newest message and count it (``dropped``). With manual ack a dropped
message was never acknowledged, so the broker delivers it again in the next session; with
MQTT 5 the connection also asks the broker (Receive Maximum) to send no more un-acknowledged
QoS 1/2 messages than the queue holds, so holding acks back until the local inbox has them
cannot overflow it. MQTT 3.1.1 has no Receive Maximum: there the broker's own in-flight limit
is the bound (Mosquitto's max_inflight_messages, 20 by default, well below the queue), and a
broker without one can overflow the queue; what it drops waits for the next session, and the
down sequence number's gap makes the agent ask HQ for a snapshot meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from paho.mqtt.client import MQTTMessage

from plantsync.drivers.hub import InboundMessage

logger = logging.getLogger(__name__)


def inbound_message(message: MQTTMessage) -> InboundMessage:
    """An immutable copy of a paho message (paho's payload may be a bytearray)."""
    return InboundMessage(
        message.topic, bytes(message.payload), message.qos, message.retain, message.mid
    )


class InboundQueue:
    """Messages delivered on our subscriptions, waiting for ``messages()``; event loop only."""

    def __init__(self, size: int) -> None:
        self.size = size
        """The most messages held; also the Receive Maximum asked of the broker (manual ack)."""
        self.dropped = 0
        """Messages dropped because the reader fell behind (queue full: drop newest)."""
        self._messages: collections.deque[InboundMessage] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, message: InboundMessage) -> None:
        """Queue a delivered message, or drop it when the queue is full."""
        if len(self._messages) >= self.size:
            # Drop newest: un-acked, so with manual ack the broker redelivers it next session.
            self.dropped += 1
            if self.dropped == 1:
                logger.warning("inbound queue full (%d): dropping messages", len(self._messages))
            return
        self._messages.append(message)
        self._ready.set()

    def wake(self) -> None:
        """The link has ended: a reader waiting in ``get`` looks at ``done`` again."""
        self._ready.set()

    async def get(self, done: asyncio.Future[None]) -> InboundMessage | None:
        """The next message. Once the queue is empty and the link is ``done``: None after a
        clean close, the link's error (HubUnavailable) after a drop."""
        while not self._messages:
            if done.done():
                done.result()
                return None
            self._ready.clear()
            # Woken by a new message or by the end of the link: never waits on a dead link.
            await self._ready.wait()
        return self._messages.popleft()

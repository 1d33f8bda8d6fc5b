"""Several Publish requests in flight for one OPC UA session, as Part 4 §5.13.5 intends.

    asyncua's publish loop ── 1 request ──┐   server: per publishing cycle, one message per
    PublishRequests loop 1 ── 1 request ──┼─▶ queued request, at most MaxNotificationsPerPublish
    PublishRequests loop n ── 1 request ──┘   notifications each; MoreNotifications if it holds more
                       │
                       ▼
             deliver(PublishResult) ─▶ the driver's callback; acks go on the loop's next request

asyncua 2.1 keeps exactly one Publish request in flight and runs the callback before it sends
the next. A server that caps the notifications per message (node-opcua servers do; Node-RED's
client asks for 10) then answers about once per publishing cycle with a full message, and the
changes pile up on the server: 72 values/s delivered of 5,000/s offered (issue 15). A server can
only answer as many messages per cycle as it holds requests, so the cure is more requests.

``PublishRequests`` starts with ``initial`` requests in flight (asyncua's own loop counts as one)
and adds one, up to ``maximum``, each time the server answers ``MoreNotifications``: a server
that keeps up never sees more than ``initial``. ``BadTooManyPublishRequests`` (the server's own
limit) lowers ``maximum`` to what it accepted. A lost connection ends the extra loops quietly:
the driver's connection-lost callback and stall watch report the loss, once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.ua.uaerrors import BadNoSubscription, BadTimeout, BadTooManyPublishRequests, UaError

_logger = logging.getLogger(__name__)


@dataclass
class PublishCounters:
    """What the status page and metrics can read about one subscription's publishing."""

    in_flight: int = 1
    """Publish requests kept outstanding now (asyncua's loop included)."""
    maximum: int = 1
    """The most it may grow to: the config's, lowered by BadTooManyPublishRequests."""
    more_notifications: int = 0
    """Responses in which the server said it holds more than it could send (its cap)."""


class PublishRequests:
    """Keeps extra Publish requests outstanding for a session's subscriptions beside asyncua's
    loop (a Publish request serves whichever subscription has something to send).

    Create each subscription with ``deliver`` as its callback (asyncua's loop then calls it),
    then ``start(subscription_id)``; one more subscription adds one more request in flight.
    """

    def __init__(
        self,
        session: UaSession,
        callback: Callable[[ua.PublishResult], None],
        *,
        link: str,
        initial: int,
        maximum: int,
    ) -> None:
        self._session, self._subscription_ids = session, set[int]()
        self._callback, self._link = callback, link
        self._loops: set[asyncio.Task[None]] = set()
        self.counters = PublishCounters(in_flight=1, maximum=max(1, maximum))
        self._initial = max(1, min(initial, self.counters.maximum))

    def start(self, subscription_id: int) -> None:
        """Serve ``subscription_id`` too: the requests in flight come up to ``initial``, plus
        one for each subscription after the first (within ``maximum``)."""
        self._subscription_ids.add(subscription_id)
        wanted = self._initial + len(self._subscription_ids) - 1
        while self.counters.in_flight < min(wanted, self.counters.maximum):
            self._add()

    async def stop(self) -> None:
        """Cancel the extra loops and wait for them (their requests die with the session)."""
        loops, self._loops = self._loops, set()
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        self.counters.in_flight = 1

    def deliver(self, result: ua.PublishResult) -> None:
        """Every response, from any loop: to the driver, and one more request when the server
        holds more than it could send."""
        self._callback(result)
        if result.MoreNotifications:
            self.counters.more_notifications += 1
            if self._subscription_ids and self.counters.in_flight < self.counters.maximum:
                self._add()

    def _add(self) -> None:
        self.counters.in_flight += 1
        loop = asyncio.create_task(self._run(), name=f"opcua-publish-{self._link}")
        self._loops.add(loop)
        loop.add_done_callback(self._ended)

    def _ended(self, loop: asyncio.Task[None]) -> None:
        if loop in self._loops:
            self._loops.discard(loop)
            self.counters.in_flight -= 1

    async def _run(self) -> None:
        """One request at a time: send it with the acks of the last answer, hand the answer on."""
        acks: list[ua.SubscriptionAcknowledgement] = []
        while True:
            try:
                response = await self._session.publish(acks)
            except BadTimeout:  # the server answered an old request late: send a new one
                acks = []
                continue
            except BadTooManyPublishRequests:
                self.counters.maximum = max(1, self.counters.in_flight - 1)
                _logger.info(
                    "opcua %s: the server takes at most %d Publish requests",
                    self._link,
                    self.counters.maximum,
                )
                return
            except (BadNoSubscription, UaError, OSError, EOFError) as exc:
                _logger.debug("opcua %s: extra publish loop ends: %r", self._link, exc)
                return
            acks = self._handle(response.Parameters)

    def _handle(self, result: ua.PublishResult) -> list[ua.SubscriptionAcknowledgement]:
        if result.SubscriptionId not in self._subscription_ids:
            return []
        self.deliver(result)
        if not result.NotificationMessage.NotificationData:
            return []  # a keep-alive carries no sequence number to acknowledge
        return [
            ua.SubscriptionAcknowledgement(
                SubscriptionId=result.SubscriptionId,
                SequenceNumber=result.NotificationMessage.SequenceNumber,
            )
        ]

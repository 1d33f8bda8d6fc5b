"""The publishes of one connection, from the event loop to their PUBACK.

    event loop thread                          network thread
    ─────────────────                          ──────────────
    send(batch) ─▶ outgoing deque ───────────▶ publish_outgoing(), each turn: client.publish()
                                               while fewer than max_inflight are un-acknowledged
    acknowledged() ◀─ keys; ready is set ◀──── puback() of a send() message: the loop is told
                                               at half a window, or when none is left in flight
    publish() ─▶ expect(mid, future)
      future ◀─ _pubacks_received() ◀───────── puback() of any other message: one wake-up per
                                               batch of PUBACKs, until the batch is taken

Paho's in-flight window and queue are switched off (see ``client.py``): the caller bounds how
many publishes are un-acknowledged (``HubConfig.max_inflight``). Paho rescans its whole window on
every PUBACK, so a large paho window is slower than an application-side one (see docs/measured.md).

Bulk senders (the uplink) use ``send``/``acknowledged``: the network thread publishes their
messages itself, refilling the window as PUBACKs arrive, so a message crosses between threads
only inside a batch. Handing every message over singly costs more CPU than paho itself
(docs/performance.md: ≈ 130 µs per message against ≈ 40 µs for paho alone).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable, Iterable

from paho.mqtt.client import Client
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from plantsync.drivers.hub import Outgoing
from plantsync.drivers.mqtt.tls import refusal
from plantsync.errors import PlantsyncError


class PublishWindow:
    """What one connection has handed to paho, or will, until the broker acknowledges it.

    Each method says which thread calls it. ``notify`` runs a callback in the event loop
    thread (the connection's ``call_soon_threadsafe``).
    """

    def __init__(self, max_inflight: int, notify: Callable[[Callable[[], None]], None]) -> None:
        self._max_inflight = max_inflight
        self._notify = notify
        self.ready = asyncio.Event()
        """Set when ``acknowledged()`` has something to report, or the link ended."""
        self._lock = threading.Lock()  # guards the four below, written by both threads
        self._pubacks: list[tuple[int, ReasonCode]] = []  # for publish(), in batches
        self._acknowledged: list[int] = []  # keys of send() messages
        self._acknowledged_told = False
        self._refused: PlantsyncError | None = None
        # The deque is filled by the event loop and emptied by the network thread; ``_sent``
        # (mid → key) belongs to the network thread alone, ``_futures`` to the event loop.
        self._outgoing: collections.deque[Outgoing] = collections.deque()
        self._backfill: collections.deque[Outgoing] = collections.deque()
        """``send(…, backfill=True)``: published only while ``_outgoing`` is empty."""
        self._sent: dict[int, int] = {}
        self._futures: dict[int, asyncio.Future[None]] = {}

    # -- the event loop thread -----------------------------------------------------------------

    def send(self, messages: Iterable[Outgoing], *, backfill: bool = False) -> None:
        """Queue QoS 1 messages for the network thread; the caller wakes it. Backfill waits
        behind every other message queued."""
        (self._backfill if backfill else self._outgoing).extend(messages)

    def acknowledged(self) -> list[int]:
        """The keys of ``send`` messages acknowledged since the last call, in PUBACK order;
        once they are all returned, raises the broker's refusal of one, if there was one."""
        with self._lock:
            keys, self._acknowledged = self._acknowledged, []
            self._acknowledged_told = False
            refused = self._refused
        if refused is None:
            self.ready.clear()  # the next PUBACK sets it again
            return keys
        if keys:
            return keys
        raise refused

    def expect(self, mid: int, future: asyncio.Future[None]) -> None:
        """Resolve ``future`` on the PUBACK of paho's message ``mid`` (``publish``).

        Safe without a lock: ``puback`` only *schedules* the result onto the event loop, which
        runs after the caller returns, so the future is registered before it can be resolved.
        """
        self._futures[mid] = future

    def fail(self, failure: PlantsyncError) -> None:
        """The link has ended: every ``publish`` future still waiting fails with ``failure``."""
        for future in self._futures.values():
            if not future.done():
                future.set_exception(failure)
        self._futures.clear()

    def _pubacks_received(self) -> None:
        with self._lock:
            pubacks, self._pubacks = self._pubacks, []
        for mid, reason in pubacks:
            future = self._futures.pop(mid, None)
            if future is None or future.done():
                continue
            if reason.is_failure:
                future.set_exception(refusal(reason, f"publish {mid} refused"))
            else:
                future.set_result(None)

    # -- the network thread --------------------------------------------------------------------

    def publish_outgoing(self, client: Client) -> None:
        """Publish queued ``send`` messages, oldest first and backfill last, while the window
        has room."""
        sent = self._sent
        room = self._max_inflight - len(sent)
        for outgoing in (self._outgoing, self._backfill):
            while outgoing and room > 0:
                key, topic, payload = outgoing.popleft()
                info = client.publish(topic, payload, qos=1)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    # The link is going down; its end is reported, and the key never comes back.
                    outgoing.appendleft((key, topic, payload))
                    return
                sent[info.mid] = key
                room -= 1

    def puback(self, mid: int, reason: ReasonCode) -> None:
        """Paho's on_publish: a PUBACK (QoS 1), or a QoS 0 message written."""
        key = self._sent.pop(mid, None)
        if key is not None:
            self._send_acknowledged(key, reason)
            return
        # One event loop wake-up per batch of PUBACKs, not per PUBACK: at thousands per second
        # the cross-thread wake-ups, not the broker, would set the pace.
        with self._lock:
            self._pubacks.append((mid, reason))
            first = len(self._pubacks) == 1
        if first:
            self._notify(self._pubacks_received)

    def _send_acknowledged(self, key: int, reason: ReasonCode) -> None:
        # The event loop is told once until it takes the keys, and only for half a window of
        # them or the last one in flight: each wake-up costs it more than a handful of keys.
        with self._lock:
            if reason.is_failure:
                self._refused = self._refused or refusal(reason, f"publish of {key} refused")
            else:
                self._acknowledged.append(key)
            due = (
                len(self._acknowledged) >= self._max_inflight // 2
                or not self._sent
                or self._refused is not None
            )
            tell = due and not self._acknowledged_told
            self._acknowledged_told = self._acknowledged_told or tell
        if tell:
            self._notify(self.ready.set)

"""The first step of an HQ consumer: drop duplicates, notice gaps and late arrivals.

Delivery from a site is at-least-once, so the same message (same ``id``) can arrive twice, and
every stream (``machine/<id>``, ``order/<id>``, ``acks``, ``resync``) is numbered 1, 2, 3 … by
``seq``. :class:`StreamConsumer` is pure logic (no I/O, no clock, not thread-safe: call it from
one thread or under a lock), for any MQTT client::

    from plantsync.contracts import StreamConsumer, Verdict

    consumer = StreamConsumer(on_gap=lambda gap: log.warning("missing messages: %s", gap))

    def on_message(client, userdata, message):  # paho-mqtt; any client's callback will do
        document = json.loads(message.payload)
        if "seq" not in document:  # the retained site.status is no stream message
            return
        if consumer.accept(document) is Verdict.DUPLICATE:
            return  # seen before: the broker or the agent sent it again
        store(document)  # NEW or OUT_OF_ORDER: a message not seen before, handle it once

Memory is bounded: the last ``max_ids`` ids and the last seq of ``max_streams`` streams (least
recently seen forgotten first). A stream seen for the first time (or again after being
forgotten) starts at whatever seq arrives: pass ``positions`` saved from an earlier run to
check the first message too.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

StreamKey = tuple[str, str]
"""``(site, stream)``: seq counts per stream of one site."""


class Verdict(Enum):
    """What :meth:`StreamConsumer.accept` made of one message."""

    NEW = "new"
    """Not seen before; its seq is the stream's next (or the first, or after a reported gap)."""
    DUPLICATE = "duplicate"
    """Its id was seen before: drop it."""
    OUT_OF_ORDER = "out-of-order"
    """Not seen before, but a later seq of its stream was: late, e.g. the redelivery of a message
    a gap was reported for. Handle it, knowing that newer ones were handled already."""


@dataclass(frozen=True)
class Gap:
    """Seqs ``expected`` up to ``received - 1`` of a stream did not arrive before ``received``.

    On a telemetry stream (``machine/<id>``) that is what the agent evicted at its size cap;
    on a business stream it means the broker lost messages (a session or queue limit).
    """

    site: str
    stream: str
    expected: int
    received: int

    @property
    def missing(self) -> int:
        return self.received - self.expected


class StreamConsumer:
    """De-duplicates messages by ``id`` and follows ``seq`` per ``(site, stream)``.

    ``on_gap`` is called once per gap, when the message after it arrives; the last ``max_gaps``
    gaps are also kept in ``gaps``.
    """

    def __init__(
        self,
        *,
        max_ids: int = 100_000,
        max_streams: int = 100_000,
        max_gaps: int = 1000,
        on_gap: Callable[[Gap], None] | None = None,
        positions: Mapping[StreamKey, int] | None = None,
    ) -> None:
        if max_ids < 1 or max_streams < 1:
            raise ValueError("max_ids and max_streams must be at least 1")
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._last_seq: collections.OrderedDict[StreamKey, int] = collections.OrderedDict()
        self._max_ids, self._max_streams = max_ids, max_streams
        self._on_gap = on_gap
        self.gaps: collections.deque[Gap] = collections.deque(maxlen=max_gaps)
        self.counts: collections.Counter[Verdict] = collections.Counter()
        for key, seq in (positions or {}).items():
            self._remember_seq(key, seq)

    def accept(self, message: Mapping[str, Any]) -> Verdict:
        """Classify one message (a decoded envelope) and remember it.

        Raises ValueError when ``id``, ``site``, ``stream`` or ``seq`` is missing or mistyped.
        """
        message_id, key, seq = _identity(message)
        if message_id in self._ids:
            self._ids.move_to_end(message_id)
            return self._counted(Verdict.DUPLICATE)
        self._ids[message_id] = None
        if len(self._ids) > self._max_ids:
            self._ids.popitem(last=False)
        last = self._last_seq.get(key)
        if last is not None and seq <= last:
            self._last_seq.move_to_end(key)
            return self._counted(Verdict.OUT_OF_ORDER)
        if last is not None and seq > last + 1:
            self._report(Gap(key[0], key[1], expected=last + 1, received=seq))
        self._remember_seq(key, seq)
        return self._counted(Verdict.NEW)

    def last_seq(self, site: str, stream: str) -> int | None:
        """The highest seq accepted on the stream, None for a stream not (or no longer) known."""
        return self._last_seq.get((site, stream))

    def positions(self) -> dict[StreamKey, int]:
        """The last seq of every stream known, to save and pass to the next run."""
        return dict(self._last_seq)

    def _remember_seq(self, key: StreamKey, seq: int) -> None:
        self._last_seq[key] = seq
        self._last_seq.move_to_end(key)
        if len(self._last_seq) > self._max_streams:
            self._last_seq.popitem(last=False)

    def _report(self, gap: Gap) -> None:
        self.gaps.append(gap)
        if self._on_gap is not None:
            self._on_gap(gap)

    def _counted(self, verdict: Verdict) -> Verdict:
        self.counts[verdict] += 1
        return verdict


def _identity(message: Mapping[str, Any]) -> tuple[str, StreamKey, int]:
    message_id, site, stream, seq = (message.get(key) for key in ("id", "site", "stream", "seq"))
    for name, value in (("id", message_id), ("site", site), ("stream", stream)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"the message has no string {name!r}")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("the message has no 'seq' of 1 or more")
    return str(message_id), (str(site), str(stream)), seq

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

After an outage the agent sends new telemetry at once and the backlog beside it, marked
``"historical": true`` with its original seq: per stream, live seqs run ahead and the backlog
fills in behind them. So a jump on a stream of a backfilled type (``machine.state``) is not
reported at once: the seqs skipped are held as an open *hole*, which later messages fill
(verdict NEW: each is handled once, and ordering a stream by seq gives its order back). A hole
becomes a reported gap only when it cannot be filled any more: call :meth:`flush` once the
backfill is over (e.g. when no historical message came for a while); telemetry the agent
evicted, or cut off by age, is reported then. A jump on a business stream (acks, order status,
confirmations: never backfilled) is a gap at once, as before.

Memory is bounded: the last ``max_ids`` ids, the last seq of ``max_streams`` streams and
``max_holes`` open holes (least recently seen forgotten first; a hole forgotten is reported as
a gap). A stream seen for the first time (or again after being
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

BACKFILLED_TYPES = frozenset({"machine.state"})
"""Message types the agent may send from its backlog after newer ones (``historical``)."""


class Verdict(Enum):
    """What :meth:`StreamConsumer.accept` made of one message."""

    NEW = "new"
    """Not seen before; its seq is the stream's next (or the first, or after a reported gap),
    or it fills an open hole (a backfilled message arriving after newer ones)."""
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
        max_holes: int = 10_000,
        backfilled_types: frozenset[str] = BACKFILLED_TYPES,
    ) -> None:
        if max_ids < 1 or max_streams < 1 or max_holes < 1:
            raise ValueError("max_ids, max_streams and max_holes must be at least 1")
        self._holes: collections.OrderedDict[StreamKey, list[list[int]]] = collections.OrderedDict()
        """Per stream, the seqs skipped by a jump and not arrived yet: [first, last] ranges."""
        self._hole_count = 0
        self._max_holes = max_holes
        self._backfilled_types = backfilled_types
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
            return self._counted(Verdict.NEW if self._fill(key, seq) else Verdict.OUT_OF_ORDER)
        if last is not None and seq > last + 1:
            if message.get("type") in self._backfilled_types:
                self._open(key, last + 1, seq - 1)
            else:
                self._report(Gap(key[0], key[1], expected=last + 1, received=seq))
        self._remember_seq(key, seq)
        return self._counted(Verdict.NEW)

    def holes(self) -> list[Gap]:
        """The seqs skipped and not arrived yet (a backfill may still bring them), oldest
        hole first; not reported as gaps until :meth:`flush`."""
        return [
            Gap(site, stream, expected=first, received=last + 1)
            for (site, stream), ranges in self._holes.items()
            for first, last in ranges
        ]

    def flush(self) -> list[Gap]:
        """Report every open hole as a gap (``on_gap``, ``gaps``) and forget it; returns them.

        Call it when the backfill is over: what has not arrived by then will not."""
        reported = self.holes()
        self._holes.clear()
        self._hole_count = 0
        for gap in reported:
            self._report(gap)
        return reported

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
            forgotten, _ = self._last_seq.popitem(last=False)
            self._close(forgotten)

    def _open(self, key: StreamKey, first: int, last: int) -> None:
        self._holes.setdefault(key, []).append([first, last])
        self._holes.move_to_end(key)
        self._hole_count += 1
        while self._hole_count > self._max_holes:
            oldest = next(iter(self._holes))
            ranges = self._holes[oldest]
            first_open, last_open = ranges.pop(0)
            self._hole_count -= 1
            if not ranges:
                del self._holes[oldest]
            self._report(Gap(oldest[0], oldest[1], expected=first_open, received=last_open + 1))

    def _fill(self, key: StreamKey, seq: int) -> bool:
        """Take ``seq`` out of the stream's open holes; False when it was in none."""
        ranges = self._holes.get(key, [])
        for index, (first, last) in enumerate(ranges):
            if first <= seq <= last:
                parts = [[first, seq - 1], [seq + 1, last]]
                kept = [part for part in parts if part[0] <= part[1]]
                ranges[index : index + 1] = kept
                self._hole_count += len(kept) - 1
                if not ranges:
                    del self._holes[key]
                return True
        return False

    def _close(self, key: StreamKey) -> None:
        """A stream forgotten: its open holes can no longer be filled, so they are gaps."""
        for first, last in self._holes.pop(key, []):
            self._hole_count -= 1
            self._report(Gap(key[0], key[1], expected=first, received=last + 1))

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

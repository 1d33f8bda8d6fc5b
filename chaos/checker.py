"""The hub-side checker: HQ's durable consumer of everything the site sends up.

It runs in a thread of its own with its own event loop (a busy runner cannot slow it down), on
a persistent MQTT session straight to the broker (never through the proxy), and records every
up message by id and by (stream, seq):

    by id            how often each message id arrived (more than once: a duplicate, same id)
    by stream, seq   which ids carried each seq; two ids on one seq is a reused sequence number
    epoch            a store quarantined at start-up begins every stream at seq 1 again; the
                     runner opens a new epoch then, so seqs are compared within one epoch

It also hands every ``resync.request`` to HQ (``on_resync``) and keeps every schedule ack by the
id of the down message it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from plantsync.config.model import HubConfig
from plantsync.drivers.hub import InboundMessage
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable, LinkMisconfigured

TELEMETRY, CONFIRMATION, BUSINESS = "telemetry", "confirmation", "business"


@dataclass
class _Seen:
    epoch: int
    kind: str
    stream: str
    seq: int
    copies: int = 1


@dataclass
class StreamTotals:
    """One kind of message, over every stream and epoch."""

    distinct: int = 0
    copies: int = 0
    highest: dict[tuple[int, str], int] = field(default_factory=dict)
    """(epoch, stream) → the highest seq received."""
    missing: int = 0
    """Seqs below the highest received that never arrived."""
    reused: int = 0
    """(epoch, stream, seq) that arrived with more than one message id."""
    destroyed: int = 0
    """Seqs a corrupted store held undelivered (the fault's own loss, not counted as lost)."""


class Checker:
    """Counts up messages by id and sequence number; see the module docstring."""

    def __init__(
        self,
        broker_url: str,
        site: str,
        *,
        prefix: str = "plantsync/v1",
        on_resync: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._hub = HubConfig(
            url=broker_url,
            topic_prefix=prefix,
            keepalive=timedelta(seconds=5),
            connect_timeout=timedelta(seconds=3),
        )
        self._filter = f"{prefix}/{site}/up/#"
        self._on_resync = on_resync
        self._lock = threading.Lock()
        self._ids: dict[str, _Seen] = {}
        self._streams: dict[tuple[int, str], dict[int, set[str]]] = defaultdict(dict)
        self._confirmations: dict[str, set[str]] = defaultdict(set)
        self._acks: dict[str, list[str]] = defaultdict(list)
        self._epoch = 0
        self.connects = 0
        self.fresh_sessions = 0
        """Connections on which the broker had no session for the checker."""
        self.last_telemetry = 0.0
        """time.monotonic() of the last machine.state received."""
        self.subscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- lifecycle (called from the runner's thread) ------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._main, name="chaos-checker", daemon=True)
        self._thread.start()
        if not self.subscribed.wait(timeout):
            raise RuntimeError(f"the checker did not subscribe within {timeout:.0f} s")

    def stop(self) -> None:
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(10)

    def new_epoch(self) -> None:
        """Messages first seen from now on belong to a fresh store (seqs start again at 1)."""
        with self._lock:
            self._epoch += 1

    # ---- questions (any thread) ---------------------------------------------------------------

    def seen(self, message_id: str) -> bool:
        with self._lock:
            return message_id in self._ids

    def highest(self, epoch: int) -> dict[str, int]:
        """Stream → the highest seq received in ``epoch``."""
        with self._lock:
            return {stream: max(seqs) for (e, stream), seqs in self._streams.items() if e == epoch}

    def epoch(self) -> int:
        with self._lock:
            return self._epoch

    def confirmation_ids(self) -> set[str]:
        """The ``confirmation_id`` of every production.confirmation received."""
        with self._lock:
            return set(self._confirmations)

    def ack_outcomes(self) -> dict[str, list[str]]:
        """Down message id → the outcomes HQ received for it, in arrival order."""
        with self._lock:
            return {original: list(outcomes) for original, outcomes in self._acks.items()}

    def totals(
        self,
        expected: dict[tuple[int, str], int],
        destroyed: AbstractSet[tuple[int, str, int]] = frozenset(),
    ) -> dict[str, StreamTotals]:
        """Per kind: distinct and total copies, and per (epoch, stream) what is missing below
        ``expected`` (the highest seq the store committed) or below the highest received, apart
        from ``destroyed`` (epoch, stream, seq): rows a corrupted store took with it."""
        totals = {kind: StreamTotals() for kind in (TELEMETRY, CONFIRMATION, BUSINESS)}
        with self._lock:
            for seen in self._ids.values():
                total = totals[seen.kind]
                total.distinct += 1
                total.copies += seen.copies
            kinds = {(s.epoch, s.stream): s.kind for s in self._ids.values()}
            keys = set(self._streams) | set(expected)
            for key in keys:
                seqs = self._streams.get(key, {})
                kind = kinds.get(key) or _kind_of_stream(key[1])
                top = max([expected.get(key, 0), *seqs])
                total = totals[kind]
                total.highest[key] = top
                total.missing += sum(
                    1
                    for seq in range(1, top + 1)
                    if seq not in seqs and (key[0], key[1], seq) not in destroyed
                )
                total.destroyed += sum(
                    1 for seq in range(1, top + 1) if (key[0], key[1], seq) in destroyed
                )
                total.reused += sum(1 for ids in seqs.values() if len(ids) > 1)
        return totals

    # ---- the thread ---------------------------------------------------------------------------

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                try:
                    await self._session()
                except (HubUnavailable, LinkMisconfigured):
                    await asyncio.sleep(0.2)

    async def _session(self) -> None:
        async with HubConnection(self._hub, client_id="chaos-hq-checker") as link:
            await link.subscribe([(self._filter, 1)])
            self.connects += 1
            if not link.session_present:
                self.fresh_sessions += 1
            self.subscribed.set()
            async for message in link.messages():
                self._record(message)

    def _record(self, message: InboundMessage) -> None:
        document = json.loads(message.payload)
        message_id, kind = document["id"], _kind(document["type"])
        with self._lock:
            seen = self._ids.get(message_id)
            if seen is not None:
                seen.copies += 1
                return
            stream, seq = document["stream"], int(document["seq"])
            self._ids[message_id] = _Seen(self._epoch, kind, stream, seq)
            self._streams[(self._epoch, stream)].setdefault(seq, set()).add(message_id)
            if kind == CONFIRMATION:
                self._confirmations[document["payload"]["confirmation_id"]].add(message_id)
            elif document["type"] == "schedule.ack":
                payload = document["payload"]
                self._acks[payload["original_id"]].append(payload["outcome"])
        if kind == TELEMETRY:
            self.last_telemetry = time.monotonic()
        if document["type"] == "resync.request" and self._on_resync is not None:
            self._on_resync(document)


def _kind(message_type: str) -> str:
    if message_type == "machine.state":
        return TELEMETRY
    if message_type == "production.confirmation":
        return CONFIRMATION
    return BUSINESS


def _kind_of_stream(stream: str) -> str:
    """The kind of a stream nothing of was received (only the store knows it)."""
    return TELEMETRY if stream.startswith("machine/") else BUSINESS

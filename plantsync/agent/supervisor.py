"""One owner of reconnection for every link: capped exponential backoff with full jitter.

A link is a function that connects, calls ``up()`` once it is usable, and serves until the link
drops (it raises ``LinkError``) or the agent stops (it returns, or is cancelled). The supervisor
runs it again after a delay, records the link's health, and logs once per state change, not once
per retry: counters go to the health record, which the status page and metrics read.

    CONNECTING ──up()──▶ UP ──LinkError──▶ BACKOFF ──delay──▶ CONNECTING
         │                                    ▲
         └──LinkMisconfigured──▶ FAILED ──────┘ (retried at the longest delay:
                                                  a fix on the peer is picked up)

A session that fails because the disk under the store is full (``StoreDiskFull``) is retried
too, every ``DISK_FULL_RETRY_SECONDS`` (at most the longest delay): nothing it was doing was
committed (an inbound message stays unacknowledged, so the broker delivers it again), and the
agent recovers by itself once space returns.

Times: ``since`` and ``last_activity`` are Unix times, for people; every duration (time in a
state, time since the last exchange, for "connected but nothing flows") is measured on the
monotonic clock, so a step of the wall clock neither raises a false stall nor hides a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from enum import StrEnum

from plantsync.agent.recovery.nudge import Nudge, Renewed
from plantsync.drivers.hub import Hub, PeerCertificate
from plantsync.errors import LinkError, LinkMisconfigured, StoreDiskFull, Throttled

log = logging.getLogger(__name__)

DISK_FULL_RETRY_SECONDS = 5.0
"""How often a session stopped by a full disk is tried again: space returns by an operator's
hand, so neither a tight loop nor the longest backoff fits."""

Clock = Callable[[], float]


class LinkState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass
class LinkHealth:
    """What the status page shows about one link; written only by its running object."""

    name: str
    state: LinkState = LinkState.CONNECTING
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    last_activity: float | None = None
    """Unix time of the last successful exchange (notification received, PUBACK received)."""
    connects: int = 0
    failures: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    peer: str | None = None
    """What the link reached last, for people (the hub's node and MQTT version)."""
    server: dict[str, object] | None = None
    """What the link learnt about its peer (``drivers.base.Described``): an OPC UA server's
    endpoint, security, namespace URIs and limits."""
    """What the link's driver counted this session (``drivers.base.Counted``), e.g. values lost."""
    protocol: str | None = None
    """The protocol version the link negotiated last (the hub's MQTT version), for metrics."""
    peer_certificate: PeerCertificate | None = None
    """The certificate the peer presented at its last connect (the hub's broker, over TLS)."""
    clock: Clock = field(default=time.monotonic, repr=False, compare=False)
    """Measures durations; ``wall_clock`` stamps ``since`` and ``last_activity``."""
    wall_clock: Clock = field(default=time.time, repr=False, compare=False)
    _since_tick: float | None = field(default=None, repr=False)
    _activity_tick: float | None = field(default=None, repr=False)
    _last_logged: tuple[LinkState, str | None] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._since_tick = self.clock()

    def seconds_in_state(self) -> float:
        """How long the link has been in its state, on the monotonic clock."""
        assert self._since_tick is not None
        return max(0.0, self.clock() - self._since_tick)

    def seconds_since_activity(self) -> float | None:
        """Seconds since the last successful exchange (monotonic), None if there was none."""
        if self._activity_tick is None:
            return None
        return max(0.0, self.clock() - self._activity_tick)

    def reached(self, hub: Hub) -> None:
        """What the hub session reached: node, MQTT version, the broker's certificate."""
        self.peer, self.protocol = hub.peer, hub.protocol_version
        self.peer_certificate = hub.peer_certificate

    def transition(self, state: LinkState, error: BaseException | None = None) -> None:
        """Move to ``state``; log once per change of (state, error), never once per retry.

        CONNECTING is logged at debug level only, so a link that keeps failing the same way
        writes one warning, and then one line when it comes back.
        """
        reason = _describe(error) if error is not None else None
        if state is not self.state:  # "in state for" is time in the state, not since the last call
            self.state, self.since, self._since_tick = state, self.wall_clock(), self.clock()
        if error is not None:
            self.last_error = reason
        if state is LinkState.CONNECTING:
            log.debug("link %s connecting", self.name)
            return
        if (state, reason) == self._last_logged:
            return
        self._last_logged = (state, reason)
        level = logging.WARNING if state in (LinkState.BACKOFF, LinkState.FAILED) else logging.INFO
        log.log(level, "link %s %s%s", self.name, state.value, f": {reason}" if reason else "")

    def wait_for_store(self, error: StoreDiskFull) -> None:
        """BACKOFF because the store cannot write, not because of the peer: shown on the status
        page, but not logged here, so hours of a full disk do not log every retry (the store
        logs the start and the end of the episode once each)."""
        self.state, self.since, self._since_tick = (
            LinkState.BACKOFF,
            self.wall_clock(),
            self.clock(),
        )
        self.last_error = _describe(error)

    def touch(self) -> None:
        """Record a successful exchange, for "connected but nothing flows" detection."""
        self.last_activity, self._activity_tick = self.wall_clock(), self.clock()


def _describe(error: BaseException) -> str:
    """The error and its cause in one line: the OS error usually explains the failure."""
    text = str(error) or type(error).__name__
    cause = error.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({type(cause).__name__}: {cause})"
    return text


class Backoff:
    """Capped exponential backoff with full jitter: a delay drawn from [0, min(cap, base·2ⁿ)].

    Full jitter spreads the reconnects of many plants after a hub outage, so they do not all
    arrive in the same second.
    """

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        self.initial, self.maximum = initial, maximum
        self._attempt = 0
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography

    def next_delay(self) -> float:
        """The delay before the next try of a link that keeps failing."""
        delay = self.delay(self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return delay

    def delay(self, attempt: int) -> float:
        """The delay before try ``attempt + 1`` (0: the first retry), for callers that count
        attempts themselves (the downlink keeps a message's attempts in the inbox)."""
        return self._rng.uniform(0, min(self.maximum, self.initial * 2 ** min(attempt, 32)))

    def reset(self) -> None:
        self._attempt = 0


Session = Callable[[Callable[[], None]], Awaitable[None]]
"""Connects, calls its argument once the link is usable, serves until the link drops."""


async def supervise(
    health: LinkHealth, session: Session, backoff: Backoff, nudge: Nudge | None = None
) -> None:
    """Run ``session`` until it returns normally; reconnect after every LinkError.

    ``nudge`` (``recovery.nudge``) ends a session to reconnect at once, and cuts a backoff
    short. Cancellation (the agent stopping) propagates; it is never swallowed.
    """

    def up() -> None:
        health.connects += 1
        health.touch()
        backoff.reset()
        health.transition(LinkState.UP)

    while True:
        health.transition(LinkState.CONNECTING)
        try:
            if nudge is None:
                await session(up)
            else:
                await first_completed(_serve(session, up), nudge.renewed(nudge.renewals))
        except Renewed as exc:
            health.transition(LinkState.CONNECTING, exc)
            continue
        except LinkError as exc:
            health.failures += 1
            health.transition(LinkState.BACKOFF, exc)
            delay = backoff.next_delay()
            if isinstance(exc, Throttled):  # the peer said when: never sooner
                delay = max(delay, exc.retry_after)
        except LinkMisconfigured as exc:
            health.failures += 1
            health.transition(LinkState.FAILED, exc)
            delay = backoff.maximum
        except StoreDiskFull as exc:
            health.failures += 1
            health.wait_for_store(exc)
            delay = min(backoff.maximum, DISK_FULL_RETRY_SECONDS)
        else:
            health.transition(LinkState.STOPPED)
            return
        await (nudge.sleep(delay) if nudge is not None else asyncio.sleep(delay))


async def _serve(session: Session, up: Callable[[], None]) -> None:
    await session(up)


async def first_completed(
    main: Coroutine[None, None, None], beside: Coroutine[None, None, None]
) -> None:
    """Run two halves of one session; the first to end ends both.

    ``main`` returning is a clean end (the uplink after a stop) and ends ``beside``. An error
    in either cancels the other and reaches the supervisor as itself, not wrapped in an
    ExceptionGroup (as a TaskGroup would), so a ``LinkError`` is retried.
    """
    first = asyncio.create_task(main, name=getattr(main, "__qualname__", "main"))
    second = asyncio.create_task(beside, name=getattr(beside, "__qualname__", "beside"))
    try:
        done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
        await first
    finally:
        for task in (second, first):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, LinkError):
                await task


async def every(
    interval: float,
    action: Callable[[], Awaitable[None]],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run ``action`` every ``interval`` seconds until cancelled, first after one interval.

    The event loop's clock is monotonic, so a wall-clock step neither delays the next run
    (APScheduler's interval trigger, which this replaces, waited out a backward step) nor runs
    missed ones in a burst. A slow ``action`` delays the next run; runs never overlap.
    """
    while True:
        await sleep(interval)
        await action()

"""Nudging the supervised links: reconnect now rather than at the end of a backoff.

    SIGHUP ────────────────────────┐
    a certificate or key file ─────┼─▶ Nudge.renew ─▶ every session ends (``Renewed``, a
    changed (size, mtime), polled  │                   LinkError) and reconnects at once:
                                   │                   the drivers read their TLS material
                                   │                   again at each connect
    the routing table changed ─────┴─▶ Nudge.wake ──▶ links in backoff retry at once

A renewal loses nothing: a session ends as it does when its peer goes away (the outbox keeps
every row until the broker's PUBACK; a down message not yet committed is delivered again), only
without a delay and without counting a failure. Waking only cuts a backoff's sleep short: a
network that came back (a cable, a VPN, a route) is tried now, not after up to
``reconnect.max_delay``. The routing table is read from /proc/net (Linux); elsewhere the watch
is off and the backoff alone decides.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from plantsync.errors import LinkError

log = logging.getLogger(__name__)

ROUTE_FILES = (Path("/proc/net/route"), Path("/proc/net/ipv6_route"))
WATCH_SECONDS = 2.0
"""How often the files and the routing table are looked at: a stat and a small read each."""


class Renewed(LinkError):
    """A session ended on purpose, to connect again with what changed (not a failure)."""


class Nudge:
    """Shared by every supervised link of one agent."""

    def __init__(self) -> None:
        self.renewals = 0
        self._reason = ""
        self._renewed = asyncio.Event()
        self._woken = asyncio.Event()

    def renew(self, reason: str) -> None:
        """End every session and reconnect now (and wake the links waiting)."""
        log.info("%s: the links reconnect", reason)
        self.renewals += 1
        self._reason = reason
        renewed, self._renewed = self._renewed, asyncio.Event()
        renewed.set()
        self.wake(reason)

    def wake(self, reason: str) -> None:
        """Links waiting out a backoff try again now."""
        log.debug("links woken: %s", reason)
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    async def renewed(self, seen: int) -> None:
        """Raise Renewed once ``renew`` is called after the ``seen``-th renewal."""
        while self.renewals == seen:
            await self._renewed.wait()
        raise Renewed(f"{self._reason}: reconnecting")

    async def sleep(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less when woken."""
        with_wake = asyncio.ensure_future(self._woken.wait())
        try:
            await asyncio.wait({with_wake}, timeout=delay)
        finally:
            with_wake.cancel()


async def watch(nudge: Nudge, files: Callable[[], Iterable[Path]]) -> None:
    """Renew when one of ``files`` changes, wake when the routing table does; forever."""
    seen_files, seen_routes = _fingerprint(files()), _routes()
    while True:
        await asyncio.sleep(WATCH_SECONDS)
        now_files, now_routes = _fingerprint(files()), _routes()
        if now_files != seen_files:
            nudge.renew("a certificate or key file changed")
        elif now_routes != seen_routes and now_routes is not None:
            nudge.wake("the routing table changed")
        seen_files, seen_routes = now_files, now_routes


def _fingerprint(files: Iterable[Path]) -> dict[Path, tuple[int, int] | None]:
    prints: dict[Path, tuple[int, int] | None] = {}
    for path in files:
        try:
            stat = path.stat()
            prints[path] = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            prints[path] = None
    return prints


_ROUTE_COLUMNS = {
    "route": (0, 1, 2, 3, 6, 7),  # Iface Destination Gateway Flags Metric Mask (not RefCnt, Use)
    "ipv6_route": (0, 1, 2, 3, 4, 5, 8, 9),  # destination … metric, flags, device (not counters)
}


def _routes() -> bytes | None:
    """The routes, without the counters that move with traffic; None without /proc/net."""
    digest = hashlib.sha256()
    try:
        for path in ROUTE_FILES:
            columns = _ROUTE_COLUMNS[path.name]
            for line in path.read_text().splitlines():
                fields = line.split()
                digest.update(" ".join(fields[i] for i in columns if i < len(fields)).encode())
    except OSError:
        return None
    return digest.digest()

"""A tiny sd_notify client: tells systemd how the agent is doing, over ``$NOTIFY_SOCKET``.

    plantsync run ──READY=1, STATUS=…──▶ $NOTIFY_SOCKET (unix datagram) ──▶ systemd (Type=notify)
                  ──WATCHDOG=1 every WatchdogSec/2, while the event loop turns──▶
                  ──STOPPING=1 on SIGTERM──▶

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op, so the same code path runs in a
terminal, in a container and under the unit. Sending never blocks the event loop and never
raises into the agent: a lost notification costs at most a watchdog restart, which is the point
of the watchdog. The protocol is systemd's sd_notify(3); only the standard library is used.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

STATUS_INTERVAL = 10.0
"""Seconds between status updates when systemd asks for no watchdog."""


class Notifier:
    """Sends sd_notify messages to one socket address; disabled when ``address`` is None.

    Build it with :meth:`from_environment`; ``watchdog_usec`` is systemd's ``WatchdogSec``.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec
        self._last_status: str | None = None
        self._failing = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asks for through ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``.

        ``WATCHDOG_PID`` naming another process (a child of the service) disables the watchdog.
        """
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address is not None and not address.startswith(("/", "@")):
            log.warning("NOTIFY_SOCKET %r is not a unix socket; not notifying systemd", address)
            address = None
        return cls(address, watchdog_usec=_watchdog_usec(environ))

    @property
    def enabled(self) -> bool:
        """True under systemd's ``Type=notify``."""
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec``), or None without one."""
        if self._address is None or not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2_000_000

    def ready(self, status: str) -> None:
        """Start-up is complete: the config is loaded and the store is open."""
        self._send("READY=1", f"STATUS={status}")
        self._last_status = status

    def status(self, status: str) -> None:
        """Set the line ``systemctl status`` shows, if it changed."""
        if status != self._last_status:
            self._send(f"STATUS={status}")
            self._last_status = status

    def stopping(self, status: str = "stopping: flushing the store to the hub") -> None:
        """Shutdown has begun; systemd waits up to ``TimeoutStopSec`` for the exit."""
        self._send("STOPPING=1", f"STATUS={status}")
        self._last_status = status

    def ping(self) -> None:
        """One watchdog keep-alive."""
        self._send("WATCHDOG=1")

    async def watch(self, describe: Callable[[], str] | None = None) -> None:
        """Ping the watchdog every half ``WatchdogSec`` and refresh the status, until cancelled.

        A ping is sent from a task of the event loop, so a loop that stops turning (a blocking
        call, a deadlock) stops the pings, and systemd restarts the service.
        """
        if not self.enabled:
            return
        interval = self.watchdog_interval
        while True:
            if interval is not None:
                self.ping()
            if describe is not None:
                self.status(describe())
            await asyncio.sleep(interval or STATUS_INTERVAL)

    def _send(self, *assignments: str) -> bool:
        if self._address is None:
            return False
        # An abstract socket ("@name") has a leading NUL byte in its real address.
        address = "\0" + self._address[1:] if self._address.startswith("@") else self._address
        message = "\n".join(assignments).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                notify.sendto(message, socket.MSG_DONTWAIT, address)
        except OSError as exc:
            if not self._failing:  # once per failure streak, not once per ping
                log.warning("cannot notify systemd at %s: %s", self._address, exc)
            self._failing = True
            return False
        if self._failing:
            log.info("notifying systemd at %s again", self._address)
        self._failing = False
        return True


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None

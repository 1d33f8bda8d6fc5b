"""A TCP proxy in front of the broker that can cut the agent's link in two ways.

    agent ──▶ 127.0.0.1:<proxy port> ──▶ 127.0.0.1:<broker port>

    open        bytes flow both ways
    blackhole   every connection open now, and every one accepted until ``heal()``, stops
                forwarding but stays open: what each side sends is read and thrown away, and
                neither side is told. A half-open link: only the agent's keep-alive (or its
                PUBACK stall timeout) can notice it.
    refuse      every connection is closed now, and new ones are closed as soon as accepted:
                the broker is unreachable, loudly.

A frozen connection stays frozen after ``heal()`` (its bytes are gone); it is closed once the
agent gives up on it. ``noticed`` records how long each frozen connection took the agent to
close, which is what the half-open fault checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from enum import StrEnum

_CHUNK = 65536


class Mode(StrEnum):
    OPEN = "open"
    BLACKHOLE = "blackhole"
    REFUSE = "refuse"


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen_at: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.close()


class Proxy:
    """One listening port forwarding to one upstream port, both on 127.0.0.1."""

    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.host, self.upstream_port = host, upstream_port
        self.mode = Mode.OPEN
        self.port = 0
        self.accepted = 0
        self.noticed: list[float] = []
        """Seconds from freezing to the agent closing a frozen connection, one per connection."""
        self.last_forwarded_down: float = 0.0
        """Monotonic time bytes last went broker → agent on an open connection."""
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            self._drop(connection)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    def blackhole(self) -> None:
        """Freeze every connection: nothing forwarded, nothing closed."""
        self.mode = Mode.BLACKHOLE
        now = time.monotonic()
        for connection in self._connections:
            if connection.frozen_at is None:
                connection.frozen_at = now

    def refuse(self) -> None:
        """Close every connection and refuse new ones until ``heal()``."""
        self.mode = Mode.REFUSE
        for connection in list(self._connections):
            self._drop(connection)

    def heal(self) -> None:
        """New connections forward again; frozen ones stay frozen."""
        self.mode = Mode.OPEN

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode is Mode.REFUSE:
            writer.close()
            return
        try:
            async with asyncio.timeout(5):
                up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except (OSError, TimeoutError):
            writer.close()  # the broker is down: the agent sees a refused link
            return
        connection = _Connection(writer, up_writer)
        if self.mode is Mode.BLACKHOLE:
            connection.frozen_at = time.monotonic()
        self._connections.add(connection)
        connection.tasks = [
            asyncio.create_task(self._pump(connection, reader, up_writer, up=True)),
            asyncio.create_task(self._pump(connection, up_reader, writer, up=False)),
        ]

    async def _pump(
        self,
        connection: _Connection,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        """Copy one direction until EOF; while frozen, read and discard."""
        try:
            while chunk := await source.read(_CHUNK):
                if connection.frozen_at is not None:
                    continue
                sink.write(chunk)
                await sink.drain()
                if not up:
                    self.last_forwarded_down = time.monotonic()
        except OSError:
            pass
        self._ended(connection, up=up)

    def _ended(self, connection: _Connection, *, up: bool) -> None:
        """One direction reached EOF. A frozen link is closed only when the agent closes it:
        the broker giving up on it must not reach the agent."""
        if connection not in self._connections:
            return  # dropped by us (refuse, stop)
        if connection.frozen_at is not None:
            if not up:
                return
            self.noticed.append(time.monotonic() - connection.frozen_at)
        self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        connection.close()
        current = asyncio.current_task()
        for task in connection.tasks:
            if task is not current:
                task.cancel()

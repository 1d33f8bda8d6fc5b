"""A real Mosquitto behind a gate that turns away one MQTT version the way brokers HQ runs do.

    client ─▶ VersionGate (127.0.0.1, asyncio, in the test's loop) ─▶ Mosquitto
              reads the CONNECT's protocol level: a level it turns away gets
                "refuse"  a 3.1.1 CONNACK with return code 1 (aedes)
                "close"   the socket closed, no CONNACK (RabbitMQ's MQTT plugin)
                "silence" nothing, until the client gives up (amqtt)
              any other level: CONNECT forwarded, bytes piped both ways

Mosquitto 2.0 cannot be limited to MQTT 3.1.1 by its config (``accept_protocol_versions``
came with 2.1), so the gate does it in front of it; amqtt (tests/fixtures/amqtt.py) is the
3.1.1-only broker that needs no gate.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Literal, Self

Answer = Literal["refuse", "close", "silence"]
V311, V5 = 4, 5
"""Protocol levels in CONNECT: 4 is MQTT 3.1.1, 5 is MQTT 5."""

_REFUSED_VERSION = b"\x20\x02\x00\x01"  # CONNACK, 3.1.1 form: unacceptable protocol version


class VersionGate:
    """Turns away CONNECTs of the ``refused`` levels with ``answer``; counts each one."""

    def __init__(self, upstream_port: int, answer: Answer, refused: frozenset[int]) -> None:
        self.upstream_port = upstream_port
        self.answer: Answer = answer
        self.refused = refused
        self.turned_away: list[int] = []
        """The protocol level of every CONNECT turned away, in order."""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            connect = await _read_packet(reader)
            level = _protocol_level(connect)
            if level in self.refused:
                self.turned_away.append(level)
                await self._turn_away(reader, writer)
                return
            await self._forward(connect, reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _turn_away(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.answer == "refuse":
            writer.write(_REFUSED_VERSION)
            await writer.drain()
        elif self.answer == "silence":
            await reader.read()  # until the client closes the socket

    async def _forward(
        self, connect: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers.add(up_writer)
        up_writer.write(connect)
        pipes = [
            asyncio.create_task(_pipe(reader, up_writer)),
            asyncio.create_task(_pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            up_writer.close()
            self._writers.discard(up_writer)
            for task in pipes:
                task.cancel()
                self._tasks.discard(task)
            await asyncio.gather(*pipes, return_exceptions=True)


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    """One MQTT packet: fixed header, remaining length (a varint), body."""
    header = await reader.readexactly(1)
    length_bytes, length, shift = b"", 0, 0
    while True:
        byte = await reader.readexactly(1)
        length_bytes += byte
        length += (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return header + length_bytes + await reader.readexactly(length)


def _protocol_level(connect: bytes) -> int:
    """The level byte after the protocol name ("MQTT", length-prefixed) of a CONNECT."""
    body = connect[1:]
    while body[0] & 0x80:  # skip the remaining length
        body = body[1:]
    body = body[1:]
    name_length = int.from_bytes(body[:2], "big")
    return body[2 + name_length]


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()

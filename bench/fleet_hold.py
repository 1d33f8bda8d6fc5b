"""What the fleet's broker holds beyond the fleet: many idle plant sessions, and one fast
publisher.

    hold_sessions(broker, count)   ``count`` MQTT 3.1.1 clients, each a persistent session
                                   (clean session off, as an agent's), connected in parallel
                                   batches over raw sockets: seconds to connect them all, and
                                   the broker's RSS and CPU for them
    ingest_ceiling(broker, count)  raw paho QoS 1 (bench/raw_paho.py) into the broker: msg/s,
                                   and the broker's CPU time per message

A raw CONNECT is a few dozen bytes; an idle agent costs the broker the same session and socket
(its keep-alive aside), so the per-connection figures stand for idle plants.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from bench.common import raw_paho_qos1
from bench.fleet_parts import FleetBroker

_BATCH = 250
_CONNACK_ACCEPTED = b"\x20\x02\x00\x00"
_CONNACK_SESSION_PRESENT = b"\x20\x02\x01\x00"


@dataclass(frozen=True)
class Held:
    sessions: int
    connect_seconds: float
    rss_mb_added: float
    cpu_seconds: float


def connect_packet(client_id: str, keepalive: int = 600) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session off (a persistent session), no credentials."""
    identifier = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x00" + keepalive.to_bytes(2, "big")
    payload = len(identifier).to_bytes(2, "big") + identifier
    remaining = len(variable) + len(payload)
    assert remaining < 128, "one-byte remaining length"
    return b"\x10" + bytes([remaining]) + variable + payload


async def _connect(port: int, client_id: str) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(connect_packet(client_id))
    await writer.drain()
    answer = await reader.readexactly(4)
    if answer not in (_CONNACK_ACCEPTED, _CONNACK_SESSION_PRESENT):
        raise RuntimeError(f"CONNECT of {client_id} refused: {answer!r}")
    return writer


async def hold_sessions(broker: FleetBroker, count: int) -> Held:
    """Connect ``count`` idle persistent sessions, measure, and close them again."""
    rss, cpu = broker.rss_mb(), broker.cpu_seconds()
    writers: list[asyncio.StreamWriter] = []
    started = time.monotonic()
    try:
        async with asyncio.timeout(120):
            for first in range(0, count, _BATCH):
                batch = range(first, min(count, first + _BATCH))
                writers += await asyncio.gather(
                    *(_connect(broker.port, f"idle-plant-{index:05d}") for index in batch)
                )
        elapsed = time.monotonic() - started
        await asyncio.sleep(1.0)
        return Held(count, elapsed, broker.rss_mb() - rss, broker.cpu_seconds() - cpu)
    finally:
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def ingest_ceiling(broker: FleetBroker, count: int) -> tuple[float, float]:
    """(raw paho QoS 1 msg/s into the broker, broker CPU microseconds per message)."""
    cpu = broker.cpu_seconds()
    rate = await raw_paho_qos1(broker.port, count)
    return rate, 1e6 * (broker.cpu_seconds() - cpu) / count

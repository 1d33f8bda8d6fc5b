"""What the hostile-input tests share: the real API server (uvicorn on a loopback port) over an
agent with a real store, and the process's resident memory sampled while something runs."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from plantsync.agent.service import Agent
from plantsync.config.model import AgentConfig
from plantsync.web.api import create_app
from plantsync.web.apiserver import ApiServer
from tests.api.support import attached, metrics_of


@contextlib.asynccontextmanager
async def served(config: AgentConfig) -> AsyncIterator[tuple[Agent, httpx.AsyncClient]]:
    """An attached agent behind the real uvicorn server, and a client of it."""
    async with attached(config) as agent:
        server = ApiServer.bind(create_app(agent, metrics_of(agent)), config.api)
        task = asyncio.create_task(server.serve())
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as api:
                async with asyncio.timeout(10):
                    while True:
                        with contextlib.suppress(httpx.TransportError):
                            if (await api.get("/healthz")).status_code == 200:
                                break
                        await asyncio.sleep(0.02)
                yield agent, api
        finally:
            await server.stop(task)


def rss_bytes() -> int:
    """This process's resident set now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class PeakRss:
    """The highest RSS above the level at entry, sampled every 2 ms by a thread (the event loop
    may be busy with exactly what is measured) while the block runs."""

    def __init__(self) -> None:
        self.baseline = 0
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())


def stream(total: int, chunk: int = 1 << 20) -> AsyncIterator[bytes]:
    """``total`` bytes of a JSON-looking body, sent in chunks, never held whole."""
    block = b"[" + b"0," * (chunk // 2 - 1) + b"0"

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        while sent < total:
            piece = block[: total - sent]
            sent += len(piece)
            yield piece

    return chunks()


async def raw_status(port: int, request: bytes) -> int:
    """Send ``request`` as it is (no client library limits it) and return the answer's status;
    the answer is read while the request is still being written, as a server may answer
    early."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:

        async def write() -> None:
            with contextlib.suppress(ConnectionError):
                for start in range(0, len(request), 1 << 16):
                    writer.write(request[start : start + (1 << 16)])
                    await writer.drain()

        sending = asyncio.create_task(write())
        async with asyncio.timeout(10):
            status_line = await reader.readline()
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sending
        return int(status_line.split()[1])
    finally:
        writer.close()


_PUBLISHER = """
import sys
from urllib.parse import urlsplit
import paho.mqtt.client as mqtt
url, topic, path = sys.argv[1:4]
where = urlsplit(url)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
client.connect(where.hostname, where.port)
client.loop_start()
client.publish(topic, open(path, "rb").read(), qos=1).wait_for_publish(30)
client.disconnect()
client.loop_stop()
"""


async def publish_from_child(broker_url: str, topic: str, payload_file: Path) -> None:
    """Publish a file's bytes from another process: this process's memory then measures the
    agent alone, not also a publisher's copies."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PUBLISHER, broker_url, topic, str(payload_file)
    )
    async with asyncio.timeout(60):
        assert await child.wait() == 0

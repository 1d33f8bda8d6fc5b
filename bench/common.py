"""Pieces every bench scenario shares: one of each, so every figure is measured the same way.

    Broker (Mosquitto)      plantsync.tools.localbroker.Mosquitto(..., max_queued_messages=0)
    hub-side consumer       Consumer            a separate process (bench/consumer.py)
    the MQTT ceiling        raw_paho_qos1()     a separate process (bench/raw_paho.py)
    the agent               AgentProcess        ``plantsync run --config`` as a child process
    messages                message_payload(), backlog_records(), prefill()

Scenario modules (``bench/scenario_<name>.py``) expose ``run(quick: bool) -> list[Figure]``
and may import anything here. Everything listens on loopback ports picked by the OS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.raw_paho import MARKER as CEILING_MARKER
from plantsync.buffer.base import Lane, Record
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.contracts import Topics, machine_stream
from plantsync.tools.localbroker import free_port

__all__ = [
    "API_TOKEN",
    "BACKLOG_MARKER",
    "CEILING_MARKER",
    "PAYLOAD_BYTES",
    "AgentProcess",
    "Consumer",
    "ConsumerResult",
    "agent_config",
    "backlog_records",
    "file_mb",
    "message_payload",
    "prefill",
    "raw_paho_qos1",
]

PAYLOAD_BYTES = 300
"""The message size docs/measured.md uses: a small machine.state envelope."""

BACKLOG_MARKER = b'"backlog":true'
"""In every backlog payload, so the consumer counts backlog apart from live messages."""

API_TOKEN = "bench-token-0123456789abcdef0123456789abcdef"  # noqa: S105 - loopback bench
"""The local API's write token in every bench agent's config (loopback only)."""

_PYTHON = sys.executable
_ROOT = Path(__file__).resolve().parent.parent


# ---- messages ---------------------------------------------------------------------------------


def message_payload(seq: int, machine: str, *, marker: bytes = BACKLOG_MARKER) -> bytes:
    """A machine.state-like JSON envelope of ``PAYLOAD_BYTES`` bytes carrying ``marker``."""
    head = (
        f'{{"type":"machine.state","stream":"machine/{machine}","seq":{seq},'
        f'"event_time":"{datetime.now(UTC).isoformat(timespec="milliseconds")}",'
    ).encode() + marker
    tail = b',"pad":"'
    return head + tail + b"x" * max(0, PAYLOAD_BYTES - len(head) - len(tail) - 2) + b'"}'


def backlog_records(count: int, machines: Sequence[str], topics: Topics) -> list[Record]:
    """``count`` telemetry records, round-robin over ``machines``, seq 1.. per machine: what
    an outage leaves in the outbox. The live pipeline continues each machine's sequence."""
    now = time.time()
    records = []
    for index in range(count):
        machine = machines[index % len(machines)]
        seq = index // len(machines) + 1
        records.append(
            Record(
                message_id=f"backlog-{index}",
                lane=Lane.TELEMETRY,
                stream=machine_stream(machine),
                seq=seq,
                topic=topics.machine_state(machine),
                payload=message_payload(seq, machine),
                created_at=now,
            )
        )
    return records


async def prefill(path: Path, records: Sequence[Record], *, batch: int = 1000) -> None:
    """Commit ``records`` to the outbox at ``path`` (created if missing), ``batch`` at a time."""
    outbox = await SqliteOutbox.open(path, max_size_bytes=1 << 40)
    try:
        for start in range(0, len(records), batch):
            await outbox.add(records[start : start + batch])
    finally:
        await outbox.close()


def file_mb(path: Path) -> float:
    """A SQLite file with its -wal, in MB."""
    total = sum(
        candidate.stat().st_size
        for candidate in (path, path.with_name(path.name + "-wal"))
        if candidate.exists()
    )
    return total / 1e6


# ---- the hub-side consumer --------------------------------------------------------------------


@dataclass(frozen=True)
class ConsumerResult:
    """What bench/consumer.py printed. Times are Unix seconds; latencies are seconds, per
    envelope type: ``{"machine.state": {"count": n, "p50": …, "p99": …, "max": …}, …}``."""

    count: int
    first: float
    last: float
    matched: int
    matched_first: float
    matched_last: float
    live: dict[str, dict[str, float]]
    live_during_matched: dict[str, dict[str, float]]


class Consumer:
    """The hub-side consumer process. ``await start()`` returns once it is subscribed;
    ``await result()`` waits for it to finish (``until`` matched messages) or, with
    ``stop=True``, tells it to finish now."""

    def __init__(
        self,
        port: int,
        topic_filter: str,
        *,
        match: bytes | None = None,
        until: int | None = None,
        qos: int = 0,
        duration: float = 3600.0,
        linger: float = 0.0,
    ) -> None:
        self._arguments = ["--port", str(port), "--topic", topic_filter, "--qos", str(qos)]
        self._arguments += ["--duration", str(duration), "--linger", str(linger)]
        if match is not None:
            self._arguments += ["--match", match.decode()]
        if until is not None:
            self._arguments += ["--until", str(until)]
        self._process: asyncio.subprocess.Process | None = None

    async def start(self, within: float = 10.0) -> None:
        self._process = await asyncio.create_subprocess_exec(
            _PYTHON,
            "-m",
            "bench.consumer",
            *self._arguments,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=_ROOT,
        )
        assert self._process.stdout is not None
        async with asyncio.timeout(within):
            line = await self._process.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the bench consumer did not start: {line!r}")

    async def result(self, *, within: float = 600.0, stop: bool = False) -> ConsumerResult:
        process = self._process
        assert process is not None
        assert process.stdin is not None
        assert process.stdout is not None
        if stop:
            process.stdin.close()
        try:
            async with asyncio.timeout(within):
                line = await process.stdout.readline()
        except TimeoutError:
            process.stdin.close()  # ask for what it has so far
            line = await process.stdout.readline()
        await process.wait()
        return ConsumerResult(**json.loads(line))


async def raw_paho_qos1(port: int, count: int, *, window: int = 100) -> float:
    """The ceiling: raw paho QoS 1 messages/s to the broker on ``port`` (bench/raw_paho.py),
    from the first publish to the last PUBACK. Payloads carry ``CEILING_MARKER``."""
    process = await asyncio.create_subprocess_exec(
        _PYTHON,
        "-m",
        "bench.raw_paho",
        "--port",
        str(port),
        "--count",
        str(count),
        "--window",
        str(window),
        stdout=asyncio.subprocess.PIPE,
        cwd=_ROOT,
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"raw paho failed ({process.returncode}): {output!r}")
    return float(json.loads(output)["rate"])


# ---- the agent --------------------------------------------------------------------------------


def agent_config(
    *, site: str, broker_port: int, store: Path, api_port: int, **sections: Any
) -> dict[str, Any]:
    """A config for ``plantsync run`` (as a dict; ``AgentProcess`` writes it as TOML):
    quiet logs, a short shutdown, the given extra sections (``opcua=[…]``, ``jobcontrol={…}``)."""
    config: dict[str, Any] = {
        "shutdown_timeout": "2s",
        "site": {"id": site},
        "hub": {"url": f"mqtt://127.0.0.1:{broker_port}"},
        "store": {"path": str(store)},
        "api": {"port": api_port, "token": API_TOKEN},
        "log": {"level": "warning"},
    }
    for name, section in sections.items():
        if isinstance(section, Mapping) and isinstance(config.get(name), dict):
            config[name] = {**config[name], **section}
        else:
            config[name] = section
    return config


class AgentProcess:
    """``plantsync run`` as a child process, on a config written to ``workdir/agent.toml``.

    ``await start()`` returns once its local API answers; ``peak_rss_mb()`` and
    ``cpu_seconds()`` read /proc while it runs; ``await stop()`` sends SIGTERM (a clean stop).
    Its log is ``workdir/agent.log``.
    """

    def __init__(self, config: Mapping[str, Any], workdir: Path) -> None:
        self.workdir = workdir
        self.api_port = int(config["api"]["port"])
        self.config_path = workdir / "agent.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(to_toml(config))
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def start(self, within: float = 60.0) -> None:
        executable = Path(_PYTHON).with_name("plantsync")
        with (self.workdir / "agent.log").open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                str(executable),
                "run",
                "--config",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        url = f"http://127.0.0.1:{self.api_port}/healthz"
        async with httpx.AsyncClient() as client, asyncio.timeout(within):
            while True:
                if self._process.returncode is not None:
                    raise RuntimeError(f"the agent exited: see {self.workdir / 'agent.log'}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    def peak_rss_mb(self) -> float:
        """VmHWM: the largest resident set the process has had so far."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self, within: float = 30.0) -> int:
        process = self._process
        if process is None:
            return 0
        return await end_process(process, process.terminate, within=within)


async def end_process(
    process: asyncio.subprocess.Process, ask: Callable[[], object], within: float = 10.0
) -> int:
    """``ask`` the process to end (SIGTERM, or closing its stdin), kill it after ``within``
    seconds, and return its exit code; a process that has ended already is left alone."""
    if process.returncode is not None:
        return process.returncode
    ask()
    try:
        async with asyncio.timeout(within):
            return await process.wait()
    except TimeoutError:
        process.kill()
        return await process.wait()


def to_toml(config: Mapping[str, Any]) -> str:
    """Top-level keys, then one ``[table]`` per section, nested values as inline tables."""
    plain = [f"{key} = {_toml_value(value)}" for key, value in config.items() if not _table(value)]
    tables = [
        f"\n[{key}]\n" + "\n".join(f"{name} = {_toml_value(item)}" for name, item in value.items())
        for key, value in config.items()
        if _table(value)
    ]
    return "\n".join(plain) + "\n" + "\n".join(tables) + "\n"


def _table(value: object) -> bool:
    return isinstance(value, Mapping)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} has no TOML form here")


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)

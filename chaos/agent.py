"""The agent under test: ``plantsync run`` as a child process, its config, its local API.

The agent's wall clock can be stepped through libfaketime (``Clock``): the library is preloaded
with ``FAKETIME_DONT_FAKE_MONOTONIC=1``, so only CLOCK_REALTIME moves, as when NTP steps a
clock; the offset is read from a file (re-read every second), so a running agent sees the jump.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from plantsync.config.plant import OpcUaServerConfig

SITE = "chaos-plant"
FAKETIME_LIBRARIES = (
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/faketime/libfaketime.so.1"),
)


def find_libfaketime() -> Path | None:
    """libfaketime from the Debian package ``faketime``, if installed."""
    return next((path for path in FAKETIME_LIBRARIES if path.exists()), None)


class Clock:
    """The agent's wall-clock offset, in seconds, through libfaketime's timestamp file."""

    def __init__(self, offset_file: Path) -> None:
        self.offset_file = offset_file
        self.offset = 0
        self.set(0)

    def set(self, offset: int) -> None:
        self.offset = offset
        partial = self.offset_file.with_suffix(".tmp")
        partial.write_text(f"{offset:+d}\n")
        os.replace(partial, self.offset_file)

    def environment(self, library: Path) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(library),
            "FAKETIME_TIMESTAMP_FILE": str(self.offset_file),
            "FAKETIME_CACHE_DURATION": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }


@dataclass(frozen=True)
class AgentSettings:
    """What the generated agent.toml says."""

    store: Path
    broker_port: int
    api_port: int
    mes_url: str
    plant: OpcUaServerConfig
    token: str = secrets.token_hex(16)


def config_toml(settings: AgentSettings) -> str:
    """A chaos config: short keep-alive and stall timeouts so a half-open link is noticed in
    seconds, quick reconnects and retries, no approvals (every change applies)."""
    plant = settings.plant
    lines = [
        f'[site]\nid = "{SITE}"\n',
        f'[hub]\nurl = "mqtt://127.0.0.1:{settings.broker_port}"\nkeepalive = "2s"',
        'connect_timeout = "3s"\nstall_timeout = "5s"\n',
        f'[store]\npath = "{settings.store}"\nmax_size = "256MB"\ncommit_batch = 200\n',
        f'[api]\nport = {settings.api_port}\ntoken = "{settings.token}"\n',
        f'[mes]\nurl = "{settings.mes_url}"\nrequest_timeout = "1500ms"\n',
        '[schedule]\nfrozen_horizon = "0s"\nquantity_threshold = "1000000"',
        'retry_initial_delay = "100ms"\nretry_max_delay = "2s"\n',
        '[policy]\nsnapshot_interval = "10s"\n',
        '[reconnect]\ninitial_delay = "100ms"\nmax_delay = "2s"\n',
        'shutdown_timeout = "5s"\n',
        f'[[opcua]]\nname = "{plant.name}"\nendpoint = "{plant.endpoint}"\nstall_timeout = "5s"\n',
    ]
    # shutdown_timeout is a top-level key: it must come before the first table.
    lines.insert(0, lines.pop(lines.index('shutdown_timeout = "5s"\n')))
    for machine in plant.machines:
        lines.append(f'[[opcua.machines]]\nid = "{machine.id}"\n')
        lines.extend(
            f'[[opcua.machines.tags]]\nname = "{tag.name}"\nnode_id = "{tag.node_id}"\n'
            for tag in machine.tags
        )
    return "\n".join(lines)


class AgentProcess:
    """Start, SIGKILL, SIGTERM and restart ``plantsync run``; restarts are counted."""

    def __init__(
        self, config_file: Path, log_file: Path, environment: dict[str, str] | None = None
    ) -> None:
        self.config_file, self.log_file = config_file, log_file
        self._environment = environment or {}
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits_on_its_own: list[int] = []
        """Exit codes of runs that ended without being killed or stopped by the harness."""
        self.exit_reasons: list[str] = []
        """For each of those, the last error line the agent logged: why it gave up."""
        self._offset = 0

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> int:
        """Spawn the agent; returns the log's size before it, where this run's lines begin."""
        self.starts += 1
        offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        self._offset = offset
        with self.log_file.open("ab") as log:
            log.write(f"==== chaos: agent start {self.starts} ====\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "plantsync", "run", "--config", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self._environment},
                start_new_session=True,
            )
        return offset

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        self._end(signal.SIGKILL)

    def terminate(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait: the agent flushes and stops cleanly. Its exit code."""
        return self._end(signal.SIGTERM, timeout)

    def reap(self) -> int | None:
        """The exit code if the agent ended by itself (it is then recorded), else None."""
        if self._process is None:
            return None
        code = self._process.poll()
        if code is not None:
            self._process = None
            self.exits_on_its_own.append(code)
            self.exit_reasons.append(self._last_error())
        return code

    def _last_error(self) -> str:
        """The last line of this run's log that says ERROR or CRITICAL (or that none did)."""
        with self.log_file.open("rb") as log:
            log.seek(self._offset)
            lines = log.read().decode(errors="replace").splitlines()
        errors = [line for line in lines if "ERROR" in line or "CRITICAL" in line]
        return errors[-1][-300:] if errors else "(no error logged)"

    def _end(self, signum: signal.Signals, timeout: float = 10.0) -> int | None:
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                return process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                return process.wait(timeout=10)
        return process.returncode


class AgentApi:
    """The agent's local API, as the plant's MES and plant IT call it."""

    def __init__(self, port: int, token: str) -> None:
        self._client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=5.0,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def healthy(self) -> bool:
        try:
            return (await self._client.get("/healthz", timeout=1.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def status(self) -> dict[str, Any] | None:
        try:
            response = await self._client.get("/api/v1/status", timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        document: dict[str, Any] = response.json()
        return document

    async def metric(self, name: str) -> float | None:
        """One unlabelled sample from /metrics."""
        try:
            response = await self._client.get("/metrics", timeout=2.0)
        except httpx.HTTPError:
            return None
        for line in response.text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "_total "):
                return float(line.split()[-1])
        return None

    async def confirm(self, body: dict[str, Any]) -> httpx.Response:
        """POST one confirmation; raises httpx.HTTPError when no answer came."""
        return await self._client.post("/api/v1/confirmations", json=body)

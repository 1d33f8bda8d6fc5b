"""sd_notify: what systemd receives on a real unix datagram socket, in-process and from
``plantsync run`` as a child process, and that nothing happens outside systemd."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantsync.tools.localbroker import Mosquitto
from plantsync.tools.systemd import Notifier


class NotifySocket:
    """What systemd listens on: a bound unix datagram socket, read without blocking."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + address[1:] if address.startswith("@") else address)
        self._socket.setblocking(False)

    def drain(self) -> list[str]:
        messages: list[str] = []
        while True:
            try:
                messages.append(self._socket.recv(4096).decode())
            except BlockingIOError:
                return messages

    def wait_for(self, assignment: str, within: float) -> list[str]:
        """Every message up to and including the first that carries ``assignment``."""
        seen: list[str] = []
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            seen += self.drain()
            for index, message in enumerate(seen):
                if assignment in message.split("\n"):
                    return seen[: index + 1]
            time.sleep(0.02)
        raise AssertionError(f"no {assignment} within {within} s; received {seen}")

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    yield listener
    listener.close()


def test_ready_sends_ready_and_the_status_line(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": notify_socket.address})
    notifier.ready("site plant-01: hub up")
    assert notify_socket.drain() == ["READY=1\nSTATUS=site plant-01: hub up"]


def test_an_abstract_socket_address_is_reached(tmp_path: Path) -> None:
    listener = NotifySocket(f"@plantsync-test-{os.getpid()}-{tmp_path.name}")
    try:
        Notifier.from_environment({"NOTIFY_SOCKET": listener.address}).stopping()
        assert listener.drain()[0].startswith("STOPPING=1\n")
    finally:
        listener.close()


def test_status_is_sent_only_when_it_changes(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": notify_socket.address})
    for status in ("hub up", "hub up", "hub backoff", "hub backoff"):
        notifier.status(status)
    assert notify_socket.drain() == ["STATUS=hub up", "STATUS=hub backoff"]


def test_the_watchdog_interval_is_half_of_watchdog_usec(notify_socket: NotifySocket) -> None:
    environ = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environment(environ).watchdog_interval == 15.0
    mine = {**environ, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(mine).watchdog_interval == 15.0


def test_a_watchdog_meant_for_another_process_is_not_pinged(notify_socket: NotifySocket) -> None:
    environ = {
        "NOTIFY_SOCKET": notify_socket.address,
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": str(os.getpid() + 1),
    }
    assert Notifier.from_environment(environ).watchdog_interval is None


async def test_the_watchdog_is_pinged_only_while_the_event_loop_turns(
    notify_socket: NotifySocket,
) -> None:
    environ = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "100000"}  # 0.1 s
    notifier = Notifier.from_environment(environ)
    watch = asyncio.create_task(notifier.watch(lambda: "running"))
    await asyncio.sleep(0.3)
    turning = notify_socket.drain()
    time.sleep(0.3)  # noqa: ASYNC251  (a stuck event loop is what this test is about)
    stuck = notify_socket.drain()
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    pings = [message for message in turning if "WATCHDOG=1" in message.split("\n")]
    assert len(pings) >= 4, turning
    assert "STATUS=running" in turning
    assert stuck == []


async def test_without_notify_socket_nothing_is_sent_and_watch_returns_at_once() -> None:
    notifier = Notifier.from_environment({"WATCHDOG_USEC": "100000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready("running")
    notifier.stopping()
    async with asyncio.timeout(1):
        await notifier.watch(lambda: "running")


def test_a_socket_that_is_gone_is_logged_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="plantsync.tools.systemd"):
        for _ in range(3):
            notifier.ping()
    assert len(caplog.records) == 1
    assert "cannot notify systemd" in caplog.records[0].getMessage()


def test_a_notify_socket_that_is_not_a_unix_path_disables_notification(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="plantsync.tools.systemd"):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "not a unix socket" in caplog.text


@pytest.mark.slow
def test_plantsync_run_reports_ready_watchdog_and_stopping_and_ignores_sighup(
    tmp_path: Path, broker: Mosquitto, notify_socket: NotifySocket
) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'shutdown_timeout = "2s"\n[site]\nid = "notify-test"\n'
        f'[hub]\nurl = "{broker.url}"\n[store]\npath = "{tmp_path / "store.db"}"\n'
        # Port 0: the default 8470 is anyone's on a shared machine (the demo's, another run's
        # agent), and an agent that cannot listen exits before READY: a cause of this flake.
        "[api]\nport = 0\n"
    )
    environ = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.address,
        "WATCHDOG_USEC": "200000",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "agent.log"
    with log.open("wb") as output:
        agent = subprocess.Popen(
            [sys.executable, "-m", "plantsync", "run", "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    try:
        ready = notify_socket.wait_for("READY=1", within=30)[-1].split("\n")
        assert (tmp_path / "store.db").exists(), "READY only once the store is open"
        assert ready[0] == "READY=1"
        assert ready[1].startswith("STATUS=site notify-test: hub ")
        notify_socket.wait_for("WATCHDOG=1", within=5)
        agent.send_signal(signal.SIGHUP)
        notify_socket.wait_for("WATCHDOG=1", within=5)
        assert agent.poll() is None, "SIGHUP must not stop the agent"
        agent.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", within=5)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert "SIGHUP: the config is read only at start" in log.read_text()
    assert "SIGHUP: TLS material read again: the links reconnect" in log.read_text()

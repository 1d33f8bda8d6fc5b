"""A real Mosquitto on a loopback port, for the tests and for ``plantsync demo``.

The broker runs as our child process in the foreground (never ``-d``), so we own its
lifetime: ``stop()`` lets it save its persistence file, ``kill()`` loses whatever it had not
autosaved yet, and ``restart()`` brings it back on the same port with the same files.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 20


class MosquittoFailed(RuntimeError):
    """The local broker could not be started; the message ends with the tail of its log."""


def find_mosquitto() -> str | None:
    """The mosquitto executable: on PATH, else Debian's /usr/sbin (not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    debian = Path("/usr/sbin/mosquitto")
    return str(debian) if os.access(debian, os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class Mosquitto:
    """One Mosquitto broker process listening on ``host:port`` only, its files in ``workdir``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        persistence: bool = True,
        max_queued_messages: int = 1000,
        extra_config: str = "",
    ) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.extra_config = extra_config
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker as a HubConfig url: ``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Write the config, spawn the broker and wait until its port accepts connections."""
        if self.running:
            return
        executable = find_mosquitto()
        if executable is None:
            raise MosquittoFailed("Mosquitto is needed: sudo apt-get install mosquitto")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._config_text())
        # Its own session, so a ^C at the terminal reaches us and we stop it in order.
        self._process = subprocess.Popen(
            [executable, "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        if not self._wait_until_listening():
            self._terminate(signal.SIGKILL)
            raise MosquittoFailed(
                f"Mosquitto did not come up on {self.host}:{self.port} within "
                f"{_START_TIMEOUT:.0f}s; the end of {self.log_file}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """SIGTERM (the broker saves its persistence file), then SIGKILL if it hangs."""
        self._terminate(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: sessions and messages since the last autosave are lost, as in a crash."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop and start again on the same port with the same files."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the broker's log, for error messages and failed tests."""
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _config_text(self) -> str:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"max_queued_messages {self.max_queued_messages}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "persistence_file mosquitto.db",
            "log_dest file " + str(self.log_file),
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp_format %H:%M:%S",
        ]
        if os.geteuid() == 0:
            # Started as root, Mosquitto 2 switches to user 'mosquitto', which cannot write the
            # persistence and log files in a root-owned temporary directory. It only listens on
            # loopback for tests and the demo, so keeping root is simpler and safer than
            # chmod-ing the work directory open to everyone.
            lines.append("user root")
        return "\n".join([*lines, self.extra_config, ""])

    def _wait_until_listening(self) -> bool:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.02)
        return False

    def _terminate(self, signum: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_TIMEOUT)

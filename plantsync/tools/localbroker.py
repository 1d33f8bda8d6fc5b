"""A real Mosquitto on a loopback port, for the tests and for ``plantsync demo``.

The broker runs as our child process in the foreground (never ``-d``), so we own its
lifetime: ``stop()`` lets it save its persistence file, ``kill()`` loses whatever it had not
autosaved yet, and ``restart()`` brings it back on the same port with the same files.
"""

from __future__ import annotations

import abc
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


class BrokerProcess(abc.ABC):
    """One broker process of ours on a loopback port, its files in ``workdir``: what every
    broker the tests and the demo start has in common. A subclass spawns it (``_spawn``) and
    names the signal of a clean ``stop``."""

    stop_signal = signal.SIGTERM
    start_timeout = _START_TIMEOUT

    def __init__(self, workdir: Path, *, host: str, port: int | None) -> None:
        self.workdir = workdir
        self.host = host
        self.port = port if port is not None else free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The broker as a HubConfig url: ``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    @abc.abstractmethod
    def log_file(self) -> Path:
        """Where the broker writes its log."""

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Spawn the broker and wait until its port accepts connections."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = self._spawn()
        if not self._wait_until_listening():
            self._terminate(signal.SIGKILL)
            raise self._failed(
                f"did not come up on {self.host}:{self.port} within {self.start_timeout:.0f}s;"
                f" the end of {self.log_file}:\n{self.log_tail()}"
            )

    def stop(self) -> None:
        """The broker's clean shutdown, then SIGKILL if it hangs."""
        self._terminate(self.stop_signal)

    def kill(self) -> None:
        """SIGKILL: whatever the broker had not saved is lost, as in a crash."""
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

    @abc.abstractmethod
    def _spawn(self) -> subprocess.Popen[bytes]:
        """Write the broker's config and start it, in a session of its own."""

    def _failed(self, reason: str) -> Exception:
        return RuntimeError(f"{type(self).__name__} {reason}")

    def _wait_until_listening(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
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
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout=_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT)


class Mosquitto(BrokerProcess):
    """One Mosquitto broker process listening on ``host:port`` only, its files in ``workdir``.

    ``stop()`` (SIGTERM) lets it save its persistence file; ``kill()`` loses what it had not
    autosaved yet."""

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
        super().__init__(workdir, host=host, port=port)
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.extra_config = extra_config

    @property
    def config_file(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        executable = find_mosquitto()
        if executable is None:
            raise MosquittoFailed("Mosquitto is needed: sudo apt-get install mosquitto")
        self.config_file.write_text(self._config_text())
        # Its own session, so a ^C at the terminal reaches us and we stop it in order.
        return subprocess.Popen(
            [executable, "-c", str(self.config_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _failed(self, reason: str) -> Exception:
        return MosquittoFailed(f"Mosquitto {reason}")

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

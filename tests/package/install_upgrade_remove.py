"""The Debian package, end to end, on this machine: ``make package-test`` (root; not in
``make test``, and not collected by pytest).

    dpkg -i v1 ─▶ check-config as plantsync ─▶ agent (as plantsync, sandboxed like the unit)
        publishes to a real Mosquitto ─▶ broker down: agent buffers, stops ─▶ dpkg -i v2
        (conffile kept, store kept) ─▶ broker + agent up: every buffered message delivered
        ─▶ dpkg -r (config and state stay) ─▶ dpkg -P (nothing left)

There is no systemd PID 1 here, so the agent is started the way the unit starts it: as the
``plantsync`` user with no capabilities and no_new_privs, MemoryDenyWriteExecute (prctl MDWE),
umask 0077, the secrets of /etc/plantsync/agent.env in its environment, and a real
NOTIFY_SOCKET + WATCHDOG_USEC that this script reads. ``systemd-analyze verify`` and
``security --offline=true`` check the installed unit.

    .venv/bin/python -m tests.package.install_upgrade_remove dist/plantsync_0.1.0-1_amd64.deb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

from plantsync.config.model import HubConfig
from plantsync.drivers.mqtt import HubConnection
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto, free_port
from tests.e2e.support import SITE, HubRecorder, recording

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path("/etc/plantsync/agent.toml")
SECRETS = Path("/etc/plantsync/agent.env")
STATE = Path("/var/lib/plantsync")
STORE = STATE / "store.db"
UNIT = Path("/lib/systemd/system/plantsync.service")
ENABLED = Path("/etc/systemd/system/multi-user.target.wants/plantsync.service")
NEWER_VERSION = "0.1.0.post1"
MAX_EXPOSURE = 3.0
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


class PackageTestFailed(Exception):
    """A claim about the installed package that does not hold."""


def check(condition: bool, claim: str) -> None:
    if not condition:
        raise PackageTestFailed(claim)
    print(f"  ok  {claim}", flush=True)


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(command: Sequence[str], *, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if expect is not None and result.returncode != expect:
        raise PackageTestFailed(
            f"{' '.join(command)} exited {result.returncode}, expected {expect}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result


def installed_version() -> str | None:
    result = run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev} ${Version}", "plantsync"], expect=None
    )
    status, _, version = result.stdout.partition(" ")
    return version.strip() if result.returncode == 0 and status.startswith("ii") else None


# -- the agent, started the way plantsync.service starts it ----------------------------------


class NotifySocket:
    """systemd's side of sd_notify: a unix datagram socket the plantsync user may write to."""

    def __init__(self, directory: Path) -> None:
        import socket

        directory.mkdir(mode=0o755)
        directory.parent.chmod(0o711)  # the plantsync user must reach the socket
        self.path = directory / "notify.sock"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.path))
        self.path.chmod(0o777)
        self._socket.setblocking(False)
        self.received: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.received += self._socket.recv(4096).decode().split("\n")
            except BlockingIOError:
                return self.received

    async def wait_for(self, assignment: str, within: float) -> None:
        async with asyncio.timeout(within):
            while assignment not in self.drain():  # noqa: ASYNC110 - a socket, polled
                await asyncio.sleep(0.05)


def secrets_environment() -> dict[str, str]:
    """agent.env the way systemd's EnvironmentFile= reads it (KEY=VALUE, no expansion)."""
    environment: dict[str, str] = {}
    for line in SECRETS.read_text().splitlines():
        if line.strip() and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            environment[key.strip()] = value.strip().strip('"')
    return environment


def _memory_deny_write_execute() -> None:  # runs in the child, before exec
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")
    os.umask(0o077)


def start_agent(notify: NotifySocket, log: Path) -> subprocess.Popen[bytes]:
    """``plantsync run`` as User=plantsync, NoNewPrivileges, no capabilities, MDWE."""
    environment = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "2000000",
        **secrets_environment(),
    }
    notify.received.clear()
    command = [
        "setpriv",
        "--reuid=plantsync",
        "--regid=plantsync",
        "--init-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
        "/usr/bin/plantsync",
        "run",
        "--config",
        str(CONFIG),
    ]
    with log.open("ab") as output:
        return subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=STATE,
            preexec_fn=_memory_deny_write_execute,
        )


async def stop_agent(agent: subprocess.Popen[bytes], notify: NotifySocket) -> int:
    agent.send_signal(signal.SIGTERM)
    await notify.wait_for("STOPPING=1", within=5)
    async with asyncio.timeout(40):
        while agent.poll() is None:  # noqa: ASYNC110 - a child process, polled
            await asyncio.sleep(0.1)
    return agent.returncode


@contextlib.asynccontextmanager
async def agent_running(notify: NotifySocket, log: Path) -> AsyncIterator[None]:
    agent = start_agent(notify, log)
    try:
        await notify.wait_for("READY=1", within=60)
        check(True, "READY=1 from the installed agent (config loaded, store open)")
        await notify.wait_for("WATCHDOG=1", within=5)
        check(True, "WATCHDOG=1 pings at half of WATCHDOG_USEC")
        yield
        check(await stop_agent(agent, notify) == 0, "SIGTERM: STOPPING=1, then exit 0")
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        print(f"  agent log (tail):\n    {_tail(log)}", flush=True)


def _tail(log: Path, lines: int = 6) -> str:
    return "\n    ".join(log.read_text(errors="replace").splitlines()[-lines:])


# -- steps ---------------------------------------------------------------------------------


def install(deb: Path) -> str:
    output = run(["dpkg", "-i", str(deb)])
    return output.stdout + output.stderr


def check_fresh_install(output: str) -> None:
    check(installed_version() is not None, "dpkg -i installs the package")
    check("still the shipped sample" in output, "postinst: enabled, not started on the sample")
    check(os.path.realpath("/usr/bin/plantsync") == "/opt/plantsync/bin/plantsync", "PATH link")
    check(run(["getent", "passwd", "plantsync"]).stdout.startswith("plantsync:"), "system user")
    stat = STATE.stat()
    check(stat.st_mode & 0o777 == 0o700 and stat.st_uid == _uid("plantsync"), "state dir 0700")
    check(SECRETS.stat().st_mode & 0o777 == 0o600 and SECRETS.stat().st_uid == 0, "agent.env 0600")
    check(CONFIG.stat().st_mode & 0o777 == 0o640, "agent.toml 0640 root:plantsync")
    conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "plantsync"]).stdout
    check(str(CONFIG) in conffiles, "agent.toml is a conffile")
    check(ENABLED.is_symlink(), "plantsync.service enabled (multi-user.target.wants)")
    check(Path("/usr/share/doc/plantsync/install.md").is_file(), "the unit's Documentation= exists")


def check_unit() -> float:
    verify = run(["systemd-analyze", "verify", str(UNIT)], expect=None)
    check(verify.returncode == 0, f"systemd-analyze verify: {verify.stderr.strip() or 'clean'}")
    security = run(["systemd-analyze", "security", "--offline=true", str(UNIT)], expect=None)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    exposure = float(found[1]) if found else 99.0
    check(exposure <= MAX_EXPOSURE, f"systemd-analyze security: exposure {exposure} <= 3.0")
    return exposure


def edit(text: str, *changes: tuple[str, str]) -> str:
    """What an operator does to the sample; a line the sample no longer has is a failure."""
    for old, new in changes:
        if old not in text:
            raise PackageTestFailed(f"the sample config has no {old!r} to edit any more")
        text = text.replace(old, new, 1)
    return text


def exec_condition() -> int:
    """The unit's ExecCondition=, run as the service user: 0 lets the service start."""
    (line,) = [line for line in UNIT.read_text().splitlines() if line.startswith("ExecCondition=")]
    script = line.removeprefix("ExecCondition=/bin/sh -c ").strip("'")
    as_user = ["runuser", "-u", "plantsync", "--", "/bin/sh", "-c", script]
    return run(as_user, expect=None).returncode


def check_config_gate(broker_port: int, plant_port: int) -> None:
    as_user = ["runuser", "-u", "plantsync", "--", "plantsync", "check-config", str(CONFIG)]
    check(run(as_user).returncode == 0, "check-config of the shipped sample, as plantsync: valid")
    check(exec_condition() == 1, "the unit's ExecCondition skips the untouched sample")
    text = edit(
        CONFIG.read_text(),
        ('id = "plant-01"', f'id = "{SITE}"'),
        ("mqtt://127.0.0.1:1883", f"mqtt://127.0.0.1:{broker_port}"),
        ("opc.tcp://127.0.0.1:4840/", f"opc.tcp://127.0.0.1:{plant_port}/"),
        ('shutdown_timeout = "10s"', 'shutdown_timeout = "3s"'),
        ('max_delay = "60s"', 'max_delay = "2s"'),
    )
    CONFIG.write_text(text)
    with SECRETS.open("a") as secrets:
        secrets.write(f'PLANTSYNC_HUB__USERNAME={SITE}\nPLANTSYNC_HUB__PASSWORD="pa$$ word"\n')
    summary = run(as_user).stdout
    check(f"site   {SITE}" in summary, "check-config of the edited config, as plantsync: valid")
    check(exec_condition() == 0, "the unit's ExecCondition lets an edited config start")
    CONFIG.write_text(edit(text, ('keepalive = "30s"', 'keepalive = "soon"')))
    gate = run(["dpkg-reconfigure", "-fnoninteractive", "plantsync"]).stdout
    check("hub.keepalive" in gate and "not started" in gate, "postinst gate: invalid → not started")
    CONFIG.write_text(text)
    gate = run(["dpkg-reconfigure", "-fnoninteractive", "plantsync"]).stdout
    check("is valid" in gate, "postinst gate: configured and valid → (re)start")


def buffered_ids() -> set[str]:
    with contextlib.closing(sqlite3.connect(f"file:{STORE}?mode=ro", uri=True)) as store:
        return {row[0] for row in store.execute("SELECT message_id FROM outbox")}


async def retained_status(broker_url: str) -> dict[str, object]:
    hub = HubConfig(url=broker_url, keepalive=timedelta(seconds=5))
    async with HubConnection(hub, client_id="package-test-status") as connection:
        await connection.subscribe([(f"plantsync/v1/{SITE}/status", 1)])
        async with asyncio.timeout(10):
            async for message in connection.messages():
                status: dict[str, object] = json.loads(message.payload)
                return status
    raise PackageTestFailed("no retained status")


def check_upgrade(output: str, before: set[str]) -> None:
    check(installed_version() == f"{NEWER_VERSION}-1", f"upgraded to {NEWER_VERSION}-1")
    check("valid" in output, "postinst after the upgrade: the edited config is valid")
    check(f'id = "{SITE}"' in CONFIG.read_text(), "the operator's edits survive the upgrade")
    leftovers = list(CONFIG.parent.glob("agent.toml.dpkg-*"))
    check(not leftovers, f"no .dpkg-new/.dpkg-dist next to the config ({leftovers})")
    check(buffered_ids() == before, "the buffered messages are still in the store")
    version = run(["/usr/bin/plantsync", "version"]).stdout.strip()
    check(version == NEWER_VERSION, f"plantsync version: {version}")


def check_remove_and_purge() -> None:
    run(["dpkg", "-r", "plantsync"])
    check(not Path("/opt/plantsync").exists(), "remove: /opt/plantsync gone")
    check(not Path("/usr/bin/plantsync").exists(), "remove: /usr/bin/plantsync gone")
    check(CONFIG.exists() and SECRETS.exists(), "remove: config and secrets kept")
    check(STORE.exists(), "remove: the store is kept")
    run(["dpkg", "-P", "plantsync"])
    for path in (Path("/etc/plantsync"), STATE, ENABLED, UNIT):
        check(not path.exists() and not path.is_symlink(), f"purge: {path} gone")
    overrides = run(["dpkg-statoverride", "--list"]).stdout
    check("plantsync" not in overrides, "purge: no dpkg-statoverride left")
    check(run(["dpkg-query", "-W", "plantsync"], expect=None).returncode != 0, "purge: unknown")


def build_newer(workdir: Path) -> Path:
    step(f"build a newer package ({NEWER_VERSION}) to upgrade to")
    environment = {**os.environ, "PLANTSYNC_VERSION": NEWER_VERSION}
    script = ROOT / "packaging" / "build-deb.sh"
    subprocess.run([str(script), str(workdir)], check=True, env=environment)
    (deb,) = workdir.glob(f"plantsync_{NEWER_VERSION}-1_*.deb")
    return deb


def _uid(user: str) -> int:
    return int(run(["id", "-u", user]).stdout)


def _check_mdwe_is_inherited() -> None:
    probe = "import ctypes; print(ctypes.CDLL(None).prctl(66, 0, 0, 0, 0))"  # PR_GET_MDWE
    result = subprocess.run(
        ["setpriv", "--no-new-privs", "--", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_memory_deny_write_execute,
    )
    check(result.stdout.strip() == "1", "MemoryDenyWriteExecute (prctl MDWE) reaches the agent")


# -- the whole story -------------------------------------------------------------------------


async def story(deb: Path, newer: Path | None, scratch: Path) -> float:
    newer = newer or build_newer(scratch / "newer")
    broker = Mosquitto(scratch / "broker", persistence=True)
    plant_port = free_port()
    log = scratch / "agent.log"
    notify = NotifySocket(scratch / "notify")

    step(f"install {deb.name}")
    check_fresh_install(install(deb))
    exposure = check_unit()
    _check_mdwe_is_inherited()

    step("configure and check, as the service user")
    check_config_gate(broker.port, plant_port)

    async with SimulatedPlant(port=plant_port, tick=0.2):
        step("run the installed agent as plantsync against Mosquitto until it publishes")
        with broker_running(broker):
            async with recording(broker.url) as hub, agent_running(notify, log):
                await hub.wait_for(lambda: len(hub.messages) >= 5, within=60)
                check(True, f"{len(hub.messages)} machine.state messages at the hub")

        step("broker down: the agent buffers, then stops with messages undelivered")
        async with agent_running(notify, log):
            await asyncio.sleep(4)
        before = buffered_ids()
        check(len(before) > 0, f"{len(before)} messages buffered in {STORE}")

        step(f"upgrade to {newer.name} with messages buffered")
        check_upgrade(install(newer), before)

        step("broker and agent up again: the buffered messages are delivered")
        with broker_running(broker):
            async with recording(broker.url) as hub, agent_running(notify, log):
                await hub.wait_for(lambda: before <= _ids(hub), within=60)
                check(True, f"all {len(before)} buffered messages delivered after the upgrade")
                status = await retained_status(broker.url)
                check(status.get("version") == NEWER_VERSION, f"status: {status.get('version')}")
        check(not (before & buffered_ids()), "delivered messages left the store")

    step("remove, then purge")
    check_remove_and_purge()
    return exposure


def _ids(hub: HubRecorder) -> set[str]:
    return {str(message["id"]) for message in hub.messages}


@contextlib.contextmanager
def broker_running(broker: Mosquitto) -> Iterator[None]:
    broker.start()
    try:
        yield
    finally:
        broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("deb", type=Path, help="the package `make deb` built")
    parser.add_argument(
        "--newer", type=Path, default=None, help=f"a {NEWER_VERSION} package; default: build one"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the package test installs a package: run it as root", file=sys.stderr)
        return 1
    if installed_version() is not None:
        print("plantsync is installed on this machine; the test would purge it", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plantsync-package-test-") as scratch:
        try:
            exposure = asyncio.run(story(args.deb.resolve(), args.newer, Path(scratch)))
        except (PackageTestFailed, TimeoutError, subprocess.CalledProcessError) as exc:
            print(f"\nFAILED: {exc!r}", file=sys.stderr)
            return 1
        finally:
            if run(["dpkg-query", "-W", "plantsync"], expect=None).returncode == 0:
                run(["dpkg", "-P", "plantsync"], expect=None)
    size = args.deb.stat().st_size / 1e6
    print(
        f"\npackage test passed in {time.monotonic() - started:.0f} s: {args.deb.name}"
        f" ({size:.1f} MB), unit exposure {exposure}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``plantsync demo``: a simulated plant, a local broker and the agent, on embedded defaults.

    SimulatedPlant (asyncua server, 3 machines) ──▶ agent ──▶ Mosquitto (loopback) ──▶ hub tail
    SimulatedMes (FastAPI, polled every 2 s) ──────┘

Nothing to configure: the demo writes its store into a temporary folder (or ``--workdir``),
starts Mosquitto on a loopback port, and prints the hub's messages as they arrive, next to the
command that watches them from another terminal (this installation's own ``plantsync``, by
its absolute path: it works from any directory and needs no other package).

The status page works as in a plant: the demo draws an API token at start and prints it with
the page's URL, so a planner can log in and approve. HQ plays its part: it releases three
orders that the machines run, and a fourth that is held; then it revises the held one (its
quantity beyond the threshold), which waits on the status page for that approval.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import socket
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from plantsync.agent.logs import setup_logging
from plantsync.agent.service import Agent
from plantsync.agent.supervisor import LinkState
from plantsync.app import build_agent
from plantsync.config import config_hash
from plantsync.config.model import (
    AgentConfig,
    ApiConfig,
    HubConfig,
    LogConfig,
    PolicyConfig,
    SiteConfig,
    StoreConfig,
)
from plantsync.errors import PlantsyncError
from plantsync.sim.mes import SimulatedMes
from plantsync.sim.mes_endpoints import poll_endpoints
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.hubtools import prepare_down_message, publish, tail
from plantsync.tools.localbroker import Mosquitto, find_mosquitto, free_port

DEMO_SITE = "demo-plant"
DEMO_MACHINES = ("press-1", "press-2", "lathe-1")
PREFERRED_BROKER_PORT = 18830
PREFERRED_OPCUA_PORT = 48400
PREFERRED_API_PORT = 8470
MES_TICK_SECONDS = 2.0


def run_demo(*, workdir: Path | None, duration: float | None, quiet: bool) -> int:
    """Run the demo in the foreground until ^C (or ``duration`` seconds); exit code."""
    if find_mosquitto() is None:
        print("The demo needs Mosquitto: sudo apt-get install mosquitto", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="plantsync-demo-") as scratch:
        root = workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_demo(root, duration, quiet))
    return 0


async def _demo(root: Path, duration: float | None, quiet: bool) -> None:
    setup_logging("info", "plain")
    with Mosquitto(root / "broker", port=_port(PREFERRED_BROKER_PORT)) as broker:
        async with (
            SimulatedPlant(
                port=_port(PREFERRED_OPCUA_PORT), tick=1.0, job_seconds_per_unit=0.25
            ) as plant,
            SimulatedMes(tick_seconds=MES_TICK_SECONDS) as mes,
        ):
            token = secrets.token_urlsafe(18)
            config = _demo_config(root, broker.url, plant, mes, token)
            _write_config(root / "agent.toml", config)
            _banner(broker.url, plant.endpoint, root, config.api.port, token)
            print(f"  MES (simulated, polled):          {mes.url}/api/v1/…\n", flush=True)
            await _run(config, broker.url, duration, quiet)


def _demo_config(
    root: Path, broker_url: str, plant: SimulatedPlant, mes: SimulatedMes, token: str
) -> AgentConfig:
    return AgentConfig(
        site=SiteConfig(id=DEMO_SITE, name="Demo plant"),
        hub=HubConfig(url=broker_url),
        store=StoreConfig(path=root / "store.db"),
        opcua=[plant.server_config(name="line-1")],
        jobcontrol=plant.jobcontrol_config(),
        mes_poll=poll_endpoints(mes.url, interval=timedelta(seconds=MES_TICK_SECONDS)),
        api=ApiConfig(port=_port(PREFERRED_API_PORT), token=SecretStr(token)),
        policy=PolicyConfig(snapshot_interval=timedelta(seconds=30)),
        log=LogConfig(level="info"),
    )


async def _run(config: AgentConfig, broker_url: str, duration: float | None, quiet: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    agent = build_agent(config, config_hash=config_hash(config))
    hub = HubConfig(url=broker_url, topic_prefix=config.hub.topic_prefix)
    async with asyncio.TaskGroup() as tasks:
        helpers: list[asyncio.Task[object]] = [
            tasks.create_task(_hq_releases_a_schedule(agent, hub), name="hq")
        ]
        if not quiet:
            helpers.append(
                tasks.create_task(tail(hub, site=DEMO_SITE, out=sys.stdout), name="tail")
            )
        await agent.run(stop)
        for helper in helpers:
            helper.cancel()


async def _hq_releases_a_schedule(agent: Agent, hub: HubConfig) -> None:
    """Play HQ once the agent listens: release one order per machine and show the acks."""
    async with asyncio.timeout(60):
        while agent.health["hub"].state is not LinkState.UP:  # noqa: ASYNC110 - health has no event
            await asyncio.sleep(0.2)
    start = datetime.now(UTC) + timedelta(minutes=1)
    orders = [
        _demo_order(number, machine, start, "Released")
        for number, machine in enumerate(DEMO_MACHINES, start=1)
    ]
    held = _demo_order(len(orders) + 1, DEMO_MACHINES[0], start + timedelta(days=1), "Held")
    document = {"type": "schedule.release", "payload": {"orders": [*orders, held]}}
    message = prepare_down_message(
        document, site=DEMO_SITE, default_seq=lambda: 1, source="hq:demo"
    )
    print("HQ releases a schedule to the plant: three orders to run, one held:", flush=True)
    try:
        await publish(hub, message, out=sys.stdout, wait=15)
        revised = {**held, "revision": 2, "quantity": {"value": "40", "unit": "pcs"}}
        document = {"type": "schedule.revision", "payload": {"orders": [revised]}}
        message = prepare_down_message(
            document, site=DEMO_SITE, default_seq=lambda: 2, source="hq:demo"
        )
        print(
            f"HQ revises {held['order_id']} (12 -> 40 pcs): it waits for a planner's approval"
            " on the status page",
            flush=True,
        )
        await publish(hub, message, out=sys.stdout, wait=3)
    except PlantsyncError as exc:
        print(f"HQ could not release the demo schedule: {exc}", flush=True)


def _demo_order(number: int, machine: str, start: datetime, state: str) -> dict[str, object]:
    return {
        "order_id": f"JO-DEMO-{number}",
        "revision": 1,
        "product_id": "PRD-100",
        "quantity": {"value": "12", "unit": "pcs"},
        "work_center": "line-1",
        "equipment_id": machine,
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=1)).isoformat(),
        "priority": 10,
        "request_state": state,
    }


def _banner(broker_url: str, endpoint: str, root: Path, api_port: int, token: str) -> None:
    print(
        f"""
plantsync demo — a simulated plant of three machines, synced to a local MQTT hub
  OPC UA server (simulated plant): {endpoint}
  MQTT hub:                        {broker_url}
  agent store:                     {root / "store.db"}
  status page:                     http://127.0.0.1:{api_port}/
    log in with the demo's API token to approve: {token}
  local API (status, schedule):    http://127.0.0.1:{api_port}/api/v1/status
Watch the hub from another terminal (any directory):
  {plantsync_command()} hub tail --broker {broker_url} --site {DEMO_SITE}
Follow an order from its release through its acks to its confirmations:
  {plantsync_command()} order JO-DEMO-1 --config {root / "agent.toml"}
Stop with Ctrl-C.
""",
        flush=True,
    )


def _write_config(path: Path, config: AgentConfig) -> None:
    """What the store commands (``plantsync order``, ``buffer inspect``) need to find the
    demo's store; no secret in it (the token is read from the page's login only)."""
    path.write_text(
        f'[site]\nid = "{config.site.id}"\n[hub]\nurl = "{config.hub.url}"\n'
        f'[store]\npath = "{config.store.path}"\n'
    )


def plantsync_command() -> str:
    """This installation's ``plantsync``, by absolute path: the console script beside the
    running interpreter (the venv's), else the interpreter running the package."""
    script = Path(sys.executable).parent / "plantsync"
    if script.is_file():
        return str(script)
    return f"{sys.executable} -m plantsync"


def _port(preferred: int) -> int:
    """The preferred loopback port when it is free, so the demo's URLs are easy to remember."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred

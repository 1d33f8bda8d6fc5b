"""Peer: Node-RED doing the same OPC UA → MQTT job, next to plantsync, in the same run.

    python -m bench.run --scenario peer [--quick]

Node-RED 4.1 (Node 20 cannot run 5.x) with node-red-contrib-opcua, both pinned and installed by
this scenario into bench/.node-red/ (git-ignored) on first use. The flow is generated here:

    inject (once) ─▶ function: every item ─▶ OpcUa-Client "subscribe", topic "multiple"
      ─▶ function: {item, value, source_time} ─▶ mqtt out (QoS 1) ─▶ Mosquitto

That is the node's own way to monitor many items in one group; it hard-codes the monitored
items' queue size to 1 and the subscription's maxNotificationsPerPublish to 10, lifetime 30 and
keep-alive 3 (asyncua's server, the source here, ignores maxNotificationsPerPublish: against a
server that obeys it, docs/measured.md saw Node-RED lose 72 % at 10k items @ 5k/s).

Cases: the ingest points docs/measured.md used (1,000 items @ 1,000/s, 10,000 items @ 5,000/s), the
source's maximum with 10,000 items (what each can carry at saturation), and
a 20 s broker outage in the middle of 1,000 items @ 1,000/s: what each delivers, loses and
duplicates (plantsync must lose nothing). The consumer keeps a persistent session, so what a
subject publishes after the broker is back reaches it even if it reconnects later.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import end_process, free_ports
from bench.ingest import TAGS_PER_MACHINE, Rig, RunResult, Subject, describe
from bench.opcua_source import node_id
from bench.report import Figure

SCENARIO = "peer"
NODE_RED_VERSION = "4.1.8"
OPCUA_NODE_VERSION = "0.2.354"
INSTALL = Path(__file__).resolve().parent / ".node-red"
SOURCE_MAX = 50_000
"""More than the source can write: both subjects at the source's limit (as in ingest)."""
POINTS = {1_000: (1_000,), 10_000: (5_000, SOURCE_MAX)}
OUTAGE_ITEMS, OUTAGE_RATE = 1_000, 1_000


def run(quick: bool) -> list[Figure]:
    install_node_red()
    return asyncio.run(measure(quick))


def install_node_red() -> None:
    """npm install the pinned Node-RED and OPC UA node into bench/.node-red/, once."""
    installed = INSTALL / "node_modules" / "node-red" / "package.json"
    if installed.exists() and json.loads(installed.read_text())["version"] == NODE_RED_VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the peer scenario needs node and npm (Node 20 or newer)")
    INSTALL.mkdir(exist_ok=True)
    subprocess.run(
        [
            *(npm, "install", "--prefix", str(INSTALL), "--no-audit", "--no-fund", "--save-exact"),
            *(f"node-red@{NODE_RED_VERSION}", f"node-red-contrib-opcua@{OPCUA_NODE_VERSION}"),
        ],
        check=True,
    )


def flow(endpoint: str, broker_port: int, items: int) -> list[dict[str, object]]:
    """The Node-RED flow: subscribe to every item, publish each change as JSON, QoS 1."""
    node_ids = [node_id(index, TAGS_PER_MACHINE) for index in range(items)]
    shape = (
        "const dv = msg.payload;\n"
        "if (!dv || !dv.value) { return null; }  // the subscription id, not a change\n"
        "const stamp = dv.sourceTimestamp ? new Date(dv.sourceTimestamp).getTime() : Date.now();\n"
        "const item = String(msg.topic);\n"
        "msg.topic = 'nodered/' + item.split('s=').pop();\n"
        "msg.payload = JSON.stringify({item: item, value: dv.value.value,"
        " source_time: stamp / 1000});\n"
        "return msg;"
    )
    return [
        {"id": "tab", "type": "tab", "label": "bench"},
        {
            "id": "endpoint",
            "type": "OpcUa-Endpoint",
            "endpoint": endpoint,
            "secpol": "None",
            "secmode": "None",
            "none": True,
            "login": False,
            "usercert": False,
        },
        {
            "id": "broker",
            "type": "mqtt-broker",
            "broker": "127.0.0.1",
            "port": str(broker_port),
            "clientid": "bench-node-red",
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": True,
        },
        {
            "id": "once",
            "type": "inject",
            "z": "tab",
            "once": True,
            "onceDelay": "0.5",
            "repeat": "",
            "topic": "multiple",
            "payload": "",
            "payloadType": "date",
            "wires": [["items"]],
        },
        {
            "id": "items",
            "type": "function",
            "z": "tab",
            "func": f"msg.topic = 'multiple';\nmsg.payload = {json.dumps(node_ids)}"
            ".map(n => ({nodeId: n}));\nreturn msg;",
            "outputs": 1,
            "wires": [["client"]],
        },
        {
            "id": "client",
            "type": "OpcUa-Client",
            "z": "tab",
            "endpoint": "endpoint",
            "action": "subscribe",
            "time": "100",
            "timeUnit": "ms",
            "certificate": "n",
            "securitymode": "None",
            "securitypolicy": "None",
            "useTransport": False,
            "wires": [["shape"], [], []],
        },
        {
            "id": "shape",
            "type": "function",
            "z": "tab",
            "func": shape,
            "outputs": 1,
            "wires": [["out"]],
        },
        {
            "id": "out",
            "type": "mqtt out",
            "z": "tab",
            "broker": "broker",
            "qos": "1",
            "retain": "false",
            "wires": [],
        },
    ]


SETTINGS = """module.exports = {
    uiPort: %d,
    uiHost: "127.0.0.1",
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFile: "flows.json",
    credentialSecret: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
};
"""


class NodeRed:
    """Node-RED running the generated flow, as a Subject."""

    name = "node-red"

    def __init__(self, workdir: Path, endpoint: str, broker_port: int, items: int) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "flows.json").write_text(json.dumps(flow(endpoint, broker_port, items)))
        (workdir / "settings.js").write_text(SETTINGS % free_ports(1)[0])
        self._process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def start(self) -> None:
        node = shutil.which("node") or "node"
        red = INSTALL / "node_modules" / "node-red" / "red.js"
        log = (self.workdir / "node-red.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            *(node, str(red), "--userDir", str(self.workdir)),
            *("--settings", str(self.workdir / "settings.js")),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.workdir,
        )
        async with asyncio.timeout(120):
            while b"Started flows" not in (self.workdir / "node-red.log").read_bytes():
                if self._process.returncode is not None:
                    raise RuntimeError(f"Node-RED exited: see {self.workdir / 'node-red.log'}")
                await asyncio.sleep(0.2)

    def log_tail(self, lines: int = 25) -> str:
        text = (self.workdir / "node-red.log").read_text(errors="replace")
        return "\n".join(["Node-RED's log ends:", *text.splitlines()[-lines:]])

    async def stop(self) -> None:
        if self._process is not None:
            await end_process(self._process, self._process.terminate)


async def measure(quick: bool) -> list[Figure]:
    seconds = 6.0 if quick else 20.0
    # Quick: the outage alone, 3 s long (the points run the same code without the outage).
    points = {} if quick else POINTS
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as directory:
        for items, rates in points.items():
            async with Rig(Path(directory) / f"{items}", items) as rig:
                for rate in rates:
                    ours = await one(rig, rig.plantsync(f"plantsync-{rate}"), rate, seconds)
                    theirs = await one(rig, node_red(rig, Path(directory)), rate, seconds)
                    figures += point_figures(ours, theirs)
        async with Rig(Path(directory) / "outage", OUTAGE_ITEMS) as rig:
            outage = 3.0 if quick else 20.0
            ours = await one(rig, rig.plantsync("plantsync-outage"), OUTAGE_RATE, outage, outage)
            theirs = await one(rig, node_red(rig, Path(directory)), OUTAGE_RATE, outage, outage)
        figures += outage_figures(ours, theirs, outage)
    return figures


def node_red(rig: Rig, directory: Path) -> NodeRed:
    return NodeRed(
        directory / f"node-red-{rig.items}-{time.time_ns()}",
        rig.endpoint,
        rig.broker.port,
        rig.items,
    )


async def one(
    rig: Rig, subject: Subject, rate: float, seconds: float, outage: float | None = None
) -> RunResult:
    await rig.start(subject)
    try:
        if outage is None:
            result = await rig.measure(subject, rate, seconds)
        else:
            short = outage < 10
            result = await rig.measure(
                subject,
                rate,
                outage + (8.0 if short else 15.0),
                during=lambda: broker_outage(rig, outage, after=2.0 if short else 5.0),
                settle=4.0 if short else 10.0,
            )
        print(describe(result) + (f" (broker down {outage:g} s)" if outage else ""), flush=True)
        if isinstance(subject, NodeRed) and result.distinct < result.produced / 2:
            print(subject.log_tail(), flush=True)  # why it delivered so little, for the record
        return result
    finally:
        await subject.stop()


async def broker_outage(rig: Rig, seconds: float, *, after: float) -> None:
    """``after`` seconds in, stop the broker for ``seconds``, then start it on the same port."""
    await asyncio.sleep(after)
    await asyncio.to_thread(rig.broker.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(rig.broker.start)


def point_figures(ours: RunResult, theirs: RunResult) -> list[Figure]:
    rate = "source max" if ours.rate >= SOURCE_MAX else f"{ours.rate:,.0f}/s"
    case = f"{ours.items:,} items @ {rate}"
    peer = f"Node-RED {NODE_RED_VERSION} + node-red-contrib-opcua {OPCUA_NODE_VERSION}"
    notes = {"offered": round(ours.offered), "peer_offered": round(theirs.offered)}

    def figure(metric: str, unit: str, mine: float, their: float, higher: bool = False) -> Figure:
        return Figure(
            SCENARIO, case, metric, unit, mine, their, peer, higher_is_better=higher, notes=notes
        )

    return [
        Figure(
            SCENARIO,
            case,
            "delivered",
            "changes/s",
            ours.delivered,
            theirs.delivered,
            peer,
            target="ahead of Node-RED",
            met=ours.delivered >= theirs.delivered * 0.98 and ours.lost <= theirs.lost,
            notes=notes,
        ),
        figure("lost", "changes", ours.lost, theirs.lost),
        figure("latency p50", "ms", ours.p50_ms, theirs.p50_ms),
        figure("latency p99", "ms", ours.p99_ms, theirs.p99_ms),
        figure("CPU", "% of a core", ours.cpu_percent, theirs.cpu_percent),
        figure("peak RSS", "MB", ours.peak_rss_mb, theirs.peak_rss_mb),
    ]


def outage_figures(ours: RunResult, theirs: RunResult, outage: float) -> list[Figure]:
    case = f"{ours.items:,} items @ {ours.rate:,.0f}/s, broker down {outage:g} s"
    peer = f"Node-RED {NODE_RED_VERSION}"
    notes = {"produced": ours.produced, "peer_produced": theirs.produced}
    return [
        Figure(
            SCENARIO,
            case,
            "delivered",
            "changes",
            ours.distinct,
            theirs.distinct,
            peer,
            notes=notes,
        ),
        Figure(
            SCENARIO,
            case,
            "lost",
            "changes",
            ours.lost,
            theirs.lost,
            peer,
            target="0",
            met=ours.lost == 0,
            higher_is_better=False,
            notes=notes,
        ),
        Figure(
            SCENARIO,
            case,
            "duplicates",
            "changes",
            ours.duplicates,
            theirs.duplicates,
            peer,
            higher_is_better=False,
            notes=notes,
        ),
    ]

"""A simulated plant: a real asyncua server with a few machines, for tests and the demo.

    Objects
    └── press-1                 ns=<idx>;s=press-1
        ├── state               String   ns=<idx>;s=press-1.state   (an ItemState value)
        ├── speed               Double   strokes per minute
        ├── good_count          UInt32
        ├── scrap_count         Int64
        └── temperature         Double   °C
    (the same for every machine)
    JobOrderReceiver, JobResponseProvider
                                ISA-95 Job Control (the official nodeset), see sim.jobcontrol

With ``tick`` set, a background task moves the plant along: an executing machine counts parts
and its speed and temperature drift, and machines change state now and then. With
``tick=None`` values change only through ``set_value``, so a test decides what happens.

``restart()`` builds a fresh server on the same port: a restarted plant forgets every session
and subscription, as a real one would. Building one costs about a second (asyncua loads the
standard address space of some 6,000 nodes); starting and stopping a built one is instant.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self, cast

from asyncua import ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from plantsync.config.plant import JobControlConfig, MachineConfig, OpcUaServerConfig, TagConfig
from plantsync.contracts.machine import ItemState
from plantsync.sim.jobcontrol import EVERY_METHOD, SimulatedJobControl

NAMESPACE = "urn:plantsync:simulated-plant"
DEFAULT_MACHINES = ("press-1", "press-2", "lathe-1")

TAGS: dict[str, tuple[ua.VariantType, object]] = {
    "state": (ua.VariantType.String, ItemState.NOT_EXECUTING.value),
    "speed": (ua.VariantType.Double, 0.0),
    "good_count": (ua.VariantType.UInt32, 0),
    "scrap_count": (ua.VariantType.Int64, 0),
    "temperature": (ua.VariantType.Double, 25.0),
}
"""Every machine's variables: name → (OPC UA type, initial value)."""

UNITS: dict[str, tuple[str, str, float, float]] = {
    "speed": ("C94", "1/min", 0.0, 120.0),
    "temperature": ("CEL", "°C", 0.0, 200.0),
}
"""Analog tags' EngineeringUnits (UN/CEFACT code, display name) and EURange (low, high),
as the properties an AnalogItem carries (OPC UA Part 8, 5.3.2)."""
UNECE_UNITS = "http://www.opcfoundation.org/UA/units/un/cefact"

# asyncua logs at WARNING for things a loopback test server does on purpose (no certificate,
# anonymous access); the simulator's own logger speaks for it instead.
_NOISY_LOGGERS = ("asyncua.server.server", "asyncua.crypto.uacrypto")
_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlantSecurity:
    """Certificates for a plant that only speaks Sign / SignAndEncrypt.

    Client certificates not in ``trusted_clients`` are refused with BadCertificateUntrusted.
    """

    certificate: Path
    private_key: Path
    trusted_clients: tuple[Path, ...] = ()
    application_uri: str = "urn:plantsync:simulated-plant:server"


@dataclass
class _Machine:
    """The simulated physics of one machine; values as they are written to the server."""

    values: dict[str, object] = field(
        default_factory=lambda: {tag: initial for tag, (_, initial) in TAGS.items()}
    )

    def step(self, rng: random.Random) -> dict[str, object]:
        """Advance one tick; returns the tags that changed."""
        before = dict(self.values)
        self._maybe_change_state(rng)
        if self.values["state"] == ItemState.EXECUTING:
            self._produce(rng)
        else:
            self.values["speed"] = 0.0
            self.values["temperature"] = _toward(self._float("temperature"), 25.0, 0.05, rng)
        return {tag: value for tag, value in self.values.items() if before[tag] != value}

    def _maybe_change_state(self, rng: random.Random) -> None:
        state = self.values["state"]
        roll = rng.random()
        if state == ItemState.EXECUTING and roll < 0.02:
            self.values["state"] = ItemState.NOT_EXECUTING.value
        elif state == ItemState.NOT_EXECUTING and roll < 0.15:
            self.values["state"] = ItemState.EXECUTING.value
        elif state == ItemState.NOT_EXECUTING and roll > 0.995:
            self.values["state"] = rng.choice(
                [ItemState.OUT_OF_SERVICE.value, ItemState.NOT_AVAILABLE.value]
            )
        elif state in (ItemState.OUT_OF_SERVICE, ItemState.NOT_AVAILABLE) and roll < 0.05:
            self.values["state"] = ItemState.NOT_EXECUTING.value

    def _produce(self, rng: random.Random) -> None:
        speed = self._float("speed") or 40.0
        self.values["speed"] = round(min(max(speed + rng.gauss(0, 1.5), 30.0), 60.0), 1)
        self.values["temperature"] = _toward(self._float("temperature"), 70.0, 0.05, rng)
        self.values["good_count"] = self._int("good_count") + rng.randint(0, 3)
        if rng.random() < 0.05:
            self.values["scrap_count"] = self._int("scrap_count") + 1

    def _float(self, tag: str) -> float:
        value = self.values[tag]
        return float(value) if isinstance(value, int | float) else 0.0

    def _int(self, tag: str) -> int:
        value = self.values[tag]
        return value if isinstance(value, int) else 0


class SimulatedPlant:
    """A real OPC UA server on a loopback port, with machines whose values tests can set.

    ``async with SimulatedPlant(port=4840) as plant`` starts it; so does ``await plant.start()``.
    With ``job_control`` it also runs the job orders it receives, one unit of an order's
    quantity every ``job_seconds_per_unit`` (``plant.job_control``), offering the receiver
    methods in ``job_methods``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int,
        machines: Sequence[str] = DEFAULT_MACHINES,
        tick: float | None = 0.5,
        seed: int | None = None,
        security: PlantSecurity | None = None,
        job_control: bool = True,
        job_seconds_per_unit: float = 1.0,
        job_methods: Iterable[str] = EVERY_METHOD,
    ) -> None:
        if not machines:
            raise ValueError("a plant needs at least one machine")
        self.host = host
        self.port = port
        self.machines = tuple(machines)
        self.tick = tick
        self.security = security
        self._rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
        self._models = {machine: _Machine() for machine in self.machines}
        self._server: Server | None = None
        self._nodes: dict[tuple[str, str], Node] = {}
        self._namespace_index = 2
        self._ticker: asyncio.Task[None] | None = None
        self.job_control = (
            SimulatedJobControl(seconds_per_unit=job_seconds_per_unit, methods=job_methods)
            if job_control
            else None
        )

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/plantsync/"

    @property
    def server(self) -> Server:
        """The asyncua server while started (for a test that changes what it declares)."""
        if self._server is None:
            raise RuntimeError("the plant is not started")
        return self._server

    @property
    def running(self) -> bool:
        return self._server is not None

    def node_id(self, machine: str, tag: str) -> str:
        """The string node id of a machine's tag, e.g. ``ns=2;s=press-1.speed``."""
        return f"ns={self._namespace_index};s={machine}.{tag}"

    def receiver_node_id(self, name: str = "JobOrderReceiver") -> str:
        """The node id of the Job Control receiver (or ``JobResponseProvider``)."""
        return f"ns={self._namespace_index};s={name}"

    def server_config(self, name: str = "plant", **overrides: object) -> OpcUaServerConfig:
        """A valid config reading every tag of every machine by node id."""
        machines = [
            MachineConfig(
                id=machine,
                tags=[TagConfig(name=tag, node_id=self.node_id(machine, tag)) for tag in TAGS],
            )
            for machine in self.machines
        ]
        fields: dict[str, object] = {"name": name, "endpoint": self.endpoint, "machines": machines}
        return OpcUaServerConfig.model_validate(fields | overrides)

    def jobcontrol_config(self, name: str = "jobcontrol", **overrides: object) -> JobControlConfig:
        """A valid config for this plant's Job Control: the receiver and the provider are
        found by browsing (``receiver_node_id`` names them for an override)."""
        fields: dict[str, object] = {"name": name, "endpoint": self.endpoint}
        return JobControlConfig.model_validate(fields | overrides)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the server, listen, and start ticking (when ``tick`` is set)."""
        if self._server is not None:
            return
        server = await self._build()
        try:
            await server.start()
            await self._publish_values()
        except BaseException:
            await server.stop()
            raise
        self._server = server
        if self.job_control is not None:
            await self.job_control.start()
        if self.tick is not None:
            self._ticker = asyncio.create_task(self._run(self.tick), name=f"plant-tick-{self.port}")

    async def stop(self) -> None:
        """Stop ticking, drop every client session, close the port."""
        server, self._server = self._server, None
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if self.job_control is not None:
            await self.job_control.stop()
        if server is None:
            return
        await server.stop()
        # asyncua keeps sessions with subscriptions alive after their connection closes
        # (for TransferSubscriptions); a stopped plant must not leave their tasks running.
        for session in list(server.iserver._external_sessions.values()):
            await session.close_session(delete_subs=True)

    async def restart(self) -> None:
        """Stop, then start a fresh server on the same port; values are kept."""
        await self.stop()
        await self.start()

    async def set_value(
        self, machine: str, tag: str, value: object, *, status_code: int = StatusCodes.Good
    ) -> None:
        """Write one tag now, with a source timestamp of now and the given status."""
        self._models[machine].values[tag] = value
        await self._write(machine, tag, value, status_code)

    async def read_value(self, machine: str, tag: str) -> object:
        return await self._node(machine, tag).read_value()

    # -- building ----------------------------------------------------------------------------

    async def _build(self) -> Server:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        server = Server()
        # ConditionRefresh, as Alarms & Conditions servers offer it (sim/alarms.py)
        server.iserver.bind_condition_methods = True
        await server.init()
        server.disable_clock()  # its 1 s loop would make every stop() wait a second
        server.set_endpoint(self.endpoint)
        server.set_server_name("plantsync simulated plant")
        await self._secure(server)
        self._namespace_index = await server.register_namespace(NAMESPACE)
        self._nodes = {}
        for machine in self.machines:
            await self._add_machine(server, machine)
        if self.job_control is not None:
            await self.job_control.build(server, self._namespace_index)
        return server

    async def _secure(self, server: Server) -> None:
        if self.security is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
            server.set_identity_tokens([ua.AnonymousIdentityToken])
            return
        security = self.security
        await server.set_application_uri(security.application_uri)
        await server.load_certificate(str(security.certificate))
        await server.load_private_key(str(security.private_key))
        server.set_security_policy(
            [
                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                ua.SecurityPolicyType.Basic256Sha256_Sign,
                ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
                ua.SecurityPolicyType.Aes256Sha256RsaPss_SignAndEncrypt,
            ]
        )
        trusted = {_der(path) for path in security.trusted_clients}

        async def validate(certificate: x509.Certificate, _: ua.ApplicationDescription) -> None:
            if certificate.public_bytes(Encoding.DER) not in trusted:
                raise ServiceError(StatusCodes.BadCertificateUntrusted)

        server.set_certificate_validator(validate)

    async def _add_machine(self, server: Server, machine: str) -> None:
        index = self._namespace_index
        folder = await server.nodes.objects.add_object(
            f"ns={index};s={machine}", f"{index}:{machine}"
        )
        for tag, (variant_type, initial) in TAGS.items():
            node = await folder.add_variable(
                self.node_id(machine, tag), f"{index}:{tag}", ua.Variant(initial, variant_type)
            )
            self._nodes[(machine, tag)] = node
            if tag in UNITS:
                await _add_units(node, *UNITS[tag])

    # -- running -----------------------------------------------------------------------------

    async def _publish_values(self) -> None:
        """Write the models' values, so a restarted plant resumes where it stopped."""
        for machine, model in self._models.items():
            for tag, value in model.values.items():
                await self._write(machine, tag, value, StatusCodes.Good)

    async def _run(self, tick: float) -> None:
        while True:
            await asyncio.sleep(tick)
            for machine, model in self._models.items():
                for tag, value in model.step(self._rng).items():
                    await self._write(machine, tag, value, StatusCodes.Good)

    async def _write(self, machine: str, tag: str, value: object, status_code: int) -> None:
        variant_type, _ = TAGS[tag]
        now = cast(ua.DateTime, datetime.now(UTC))  # asyncua annotates its datetime subclass
        await self._node(machine, tag).write_value(
            ua.DataValue(
                ua.Variant(value, variant_type),
                StatusCode=ua.StatusCode(ua.UInt32(status_code)),
                SourceTimestamp=now,
                ServerTimestamp=now,
            )
        )

    def _node(self, machine: str, tag: str) -> Node:
        try:
            return self._nodes[(machine, tag)]
        except KeyError:
            raise KeyError(
                f"no tag {tag!r} on machine {machine!r} (is the plant started?)"
            ) from None


async def _add_units(node: Node, code: str, display: str, low: float, high: float) -> None:
    unit_id = int.from_bytes(code.encode(), "big")  # Part 8, 5.6.3: the code's bytes
    units = ua.EUInformation(
        NamespaceUri=UNECE_UNITS,
        UnitId=unit_id,
        DisplayName=ua.LocalizedText(display),
        Description=ua.LocalizedText(display),
    )
    # The properties' browse names are the standard's (namespace 0), as clients look them up.
    for name, value in (("EngineeringUnits", units), ("EURange", ua.Range(Low=low, High=high))):
        node_id = ua.NodeId.from_string(f"{node.nodeid.to_string()}.{name}")
        await node.add_property(node_id, ua.QualifiedName(name, 0), value)


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    return data


def _toward(value: float, target: float, rate: float, rng: random.Random) -> float:
    return round(value + (target - value) * rate + rng.gauss(0, 0.2), 2)

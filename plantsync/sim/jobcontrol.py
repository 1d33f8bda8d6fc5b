"""ISA-95 Job Control (OPC 10031-4 v2) on the simulated plant, from the official nodeset.

    server.import_xml(nodesets/opc.ua.isa95-jobcontrol.nodeset2.xml)   ns "…ISA95-JOBCONTROL_V2/"
    server.load_data_type_definitions()                                 ua.ISA95JobOrderDataType, …
    Objects
    ├── JobOrderReceiver      ns=<plant>;s=JobOrderReceiver, ISA95JobOrderReceiverObjectType
    │   ├── Store, StoreAndStart, Update  (JobOrder: ISA95JobOrderDataType,
    │   │                                  Comment: LocalizedText[])
    │   ├── Start, RevokeStart, Pause, Resume, Stop, Abort, Cancel, Clear
    │   │                                 (JobOrderID: String, Comment: LocalizedText[])
    │   │                                 every one ─▶ ReturnStatus (Int64 in the nodeset)
    │   ├── JobOrderList                  ISA95JobOrderAndStateDataType[]
    │   └── MaxDownloadableJobOrders      UInt16
    └── JobResponseProvider   ns=<plant>;s=JobResponseProvider,
        │                     ISA95JobResponseProviderObjectType
        ├── RequestJobResponseByJobOrderID     (JobOrderID) ─▶ JobResponse, ReturnStatus
        ├── RequestJobResponseByJobOrderState  (JobOrderState[]) ─▶ JobResponses[], ReturnStatus
        └── JobOrderResponseList               ISA95JobResponseDataType[]

Every receiver method is optional in the nodeset: ``methods`` names the ones this plant offers
(the others are not in its address space), so a test can stand for a server with only Store.
A refused call answers Uncertain with its ReturnStatus bits (B.2: a Bad result would carry no
output arguments); a JobOrder argument that is no ISA95JobOrderDataType is BadInvalidArgument.
The state machine and the running are in ``sim.jobcontrol_model``: every ``seconds_per_unit``
each Running job order makes one unit (every ``scrap_every``-th is scrap) until its good
quantity reaches the order's; its response is published every tenth of the order's quantity
(at least every ten units) and when its state changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, cast

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from plantsync.contracts.orders import JobOrderState
from plantsync.drivers.jobcontrol import codec
from plantsync.drivers.jobcontrol.isa95 import ReturnStatus, state
from plantsync.sim.jobcontrol_model import COMMANDS, PREPARED, STORES, Job, JobOrders

NODESETS = Path(__file__).parent / "nodesets"
NODESET = "opc.ua.isa95-jobcontrol.nodeset2.xml"
EVERY_METHOD = frozenset((*STORES, *COMMANDS))

Handler = Callable[..., Awaitable[ua.CallMethodResult]]


class SimulatedJobControl:
    """A JobOrderReceiver and a JobResponseProvider on the simulated plant's server.

    Its job orders outlive a restart of the plant, as its machines' values do.
    """

    def __init__(
        self,
        *,
        seconds_per_unit: float = 1.0,
        scrap_every: int = 8,
        max_job_orders: int = 100,
        methods: Iterable[str] = EVERY_METHOD,
    ) -> None:
        if seconds_per_unit <= 0 or scrap_every < 2:
            raise ValueError("seconds_per_unit must be positive and scrap_every at least 2")
        unknown = set(methods) - EVERY_METHOD
        if unknown:
            raise ValueError(f"no such Job Control methods: {sorted(unknown)}")
        self.seconds_per_unit = seconds_per_unit
        self.methods = frozenset(methods)
        self._orders = JobOrders(max_job_orders=max_job_orders, scrap_every=scrap_every)
        self._server: Server | None = None
        self._namespace_index = 0
        self._lists: dict[str, ua.NodeId] = {}
        self._written: dict[str, list[Any]] = {}
        self._encoded: dict[str, tuple[tuple[object, ...], Any, Any]] = {}
        self._runner: asyncio.Task[None] | None = None

    @property
    def max_job_orders(self) -> int:
        return self._orders.max_job_orders

    @max_job_orders.setter
    def max_job_orders(self, value: int) -> None:
        self._orders.max_job_orders = value

    def state(self, job_order_id: str) -> JobOrderState | None:
        """A job order's state now; None when the plant does not hold it."""
        job = self._orders.jobs.get(job_order_id)
        return job.state if job is not None else None

    async def build(self, server: Server, namespace_index: int) -> None:
        """Load the nodeset into a server being built, and add the receiver and the provider."""
        self._server, self._written, self._encoded = server, {}, {}
        await server.import_xml(str(NODESETS / NODESET))
        await server.load_data_type_definitions()
        self._namespace_index = await server.get_namespace_index(codec.NAMESPACE_URI)
        ns = namespace_index
        receiver = await self._instance(server, ns, "JobOrderReceiver", codec.RECEIVER_TYPE)
        for child in await receiver.get_children():
            name = (await child.read_browse_name()).Name
            if name in EVERY_METHOD and name not in self.methods:
                await server.delete_nodes([child], recursive=True)
            elif name in STORES:
                server.link_method(child, self._receive(name))
            elif name in COMMANDS:
                server.link_method(child, self._command(name))
            elif name == "MaxDownloadableJobOrders":
                limit = min(self.max_job_orders, 0xFFFF)  # a UInt16
                await child.write_value(ua.Variant(limit, ua.VariantType.UInt16))
            elif name == "JobOrderList":
                self._lists[name] = child.nodeid
        provider = await self._instance(
            server, ns, "JobResponseProvider", codec.RESPONSE_PROVIDER_TYPE
        )
        for child in await provider.get_children():
            name = (await child.read_browse_name()).Name
            if name == "RequestJobResponseByJobOrderID":
                server.link_method(child, self._response_by_id)
            elif name == "RequestJobResponseByJobOrderState":
                server.link_method(child, self._responses_by_state)
            elif name == "JobOrderResponseList":
                self._lists[name] = child.nodeid

    async def start(self) -> None:
        """Publish the job orders held and start running them."""
        await self._publish()
        self._runner = asyncio.create_task(self._run(), name="plant-job-control")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    async def _instance(self, server: Server, ns: int, name: str, type_id: int) -> Node:
        return await server.nodes.objects.add_object(
            ua.NodeId(ua.String(name), ua.Int16(ns)),
            ua.QualifiedName(name, ua.UInt16(ns)),
            objecttype=ua.NodeId(ua.Int32(type_id), ua.Int16(self._namespace_index)),
            instantiate_optional=True,
        )

    # -- the methods -------------------------------------------------------------------------

    def _receive(self, name: str) -> Handler:
        async def receive(_: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
            value = arguments[0].Value if arguments else None
            if not hasattr(value, "JobOrderID"):
                return ua.CallMethodResult(
                    StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadInvalidArgument))
                )
            try:
                order = codec.decode_job_order(value)
            except ValueError:
                return _result(ReturnStatus.INVALID_REQUEST)
            status = self._orders.store(name, order)
            await self._publish()
            return _result(status)

        return receive

    def _command(self, name: str) -> Handler:
        async def command(_: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
            job_order_id = arguments[0].Value if arguments else None
            if not isinstance(job_order_id, str):
                return _result(ReturnStatus.INVALID_REQUEST)
            status = self._orders.command(name, job_order_id)
            await self._publish()
            return _result(status)

        return command

    async def _response_by_id(self, _: ua.NodeId, *arguments: ua.Variant) -> ua.CallMethodResult:
        job = self._orders.jobs.get(str(arguments[0].Value)) if arguments else None
        if job is None or job.state in PREPARED:
            empty = ua.Variant(None, ua.VariantType.ExtensionObject)
            return _result(ReturnStatus.UNKNOWN_JOB_ORDER_ID, empty)
        _, response = self._encode(job)
        return _result(ReturnStatus.NO_ERROR, ua.Variant(response, ua.VariantType.ExtensionObject))

    async def _responses_by_state(
        self, _: ua.NodeId, *arguments: ua.Variant
    ) -> ua.CallMethodResult:
        wanted = arguments[0].Value if arguments else None
        if not isinstance(wanted, list) or not wanted:
            return _result(
                ReturnStatus.INVALID_REQUEST, ua.Variant([], ua.VariantType.ExtensionObject)
            )
        numbers = {int(getattr(s, "StateNumber", 0)) for s in wanted}
        responses = [
            self._encode(job)[1]
            for job in self._orders.jobs.values()
            if job.started is not None and state(job.state).StateNumber in numbers
        ]
        return _result(ReturnStatus.NO_ERROR, ua.Variant(responses, ua.VariantType.ExtensionObject))

    # -- running -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds_per_unit)
            if self._orders.advance():
                await self._publish()

    def _encode(self, job: Job) -> tuple[Any, Any]:
        """Its JobOrderList entry and its response as structures, made again only after the
        job changed: publishing the lists costs per change, not per job held."""
        version = job.version()
        cached = self._encoded.get(job.order.JobOrderID)
        if cached is None or cached[0] != version:
            ns = self._namespace_index
            entry = codec.encode_job_order_and_state(
                codec.encode_job_order(job.order), state(job.state), ns
            )
            response = codec.encode_job_response(job.response(), ns)
            cached = (version, entry, response)
            self._encoded[job.order.JobOrderID] = cached
        return cached[1], cached[2]

    async def _publish(self) -> None:
        """Write both lists, where they changed."""
        jobs = list(self._orders.jobs.values())
        encoded = [self._encode(job) for job in jobs]
        self._encoded = {job.order.JobOrderID: self._encoded[job.order.JobOrderID] for job in jobs}
        responses = [r for job, (_, r) in zip(jobs, encoded, strict=True) if job.started]
        await self._write("JobOrderResponseList", responses)
        await self._write("JobOrderList", [entry for entry, _ in encoded])

    async def _write(self, name: str, value: list[Any]) -> None:
        written = self._written.get(name)
        if self._server is None or name not in self._lists:
            return
        if (
            written is not None
            and len(written) == len(value)
            and all(a is b for a, b in zip(written, value, strict=True))
        ):
            return
        self._written[name] = value
        now = cast(ua.DateTime, datetime.now(UTC))
        await self._server.write_attribute_value(
            self._lists[name],
            _Shared(
                ua.Variant(value, ua.VariantType.ExtensionObject),
                SourceTimestamp=now,
                ServerTimestamp=now,
            ),
        )


class _Shared(ua.DataValue):
    """A list value asyncua's monitored items may share instead of deep-copying it.

    asyncua's server deep-copies every value it hands a monitored item, which for a list of
    every job order held cost more than all the rest of a change (docs/performance.md,
    roundtrip). Sharing is safe here: the simulator never changes a value it has written (an
    entry of a changed job is a new structure, ``_encode``), and an unchanged entry being the
    same object also lets asyncua's compare of old and new value stop at identity.
    """

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self


def _result(status: ReturnStatus, *outputs: ua.Variant) -> ua.CallMethodResult:
    code = StatusCodes.Good if status == ReturnStatus.NO_ERROR else StatusCodes.Uncertain
    return ua.CallMethodResult(
        StatusCode=ua.StatusCode(ua.UInt32(code)),
        OutputArguments=[*outputs, ua.Variant(int(status), ua.VariantType.Int64)],
    )

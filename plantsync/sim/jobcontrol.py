"""ISA-95 Job Control (OPC 10031-4 v2) on the simulated plant: it takes job orders and runs them.

    Objects
    ├── JobOrderReceiver          ns=<idx>;s=JobOrderReceiver
    │   ├── Store, StoreAndStart, Update      (JobOrder: String, Comment: LocalizedText[])
    │   ├── Start, RevokeStart, Pause, Resume, Stop, Abort, Cancel, Clear
    │   │                                     (JobOrderID: String, Comment: LocalizedText[])
    │   │                                     every one ─▶ ReturnStatus: UInt64
    │   ├── JobOrderList          String[]    ISA95JobOrderAndStateDataType as JSON, one each
    │   └── MaxDownloadableJobOrders  UInt16
    └── JobResponseProvider       ns=<idx>;s=JobResponseProvider
        ├── RequestJobResponseByJobOrderID    (JobOrderID) ─▶ JobResponse: String, ReturnStatus
        └── JobOrderResponseList  String[]    ISA95JobResponseDataType as JSON, one each

The wire format is in ``plantsync.drivers.isa95``. A refused call answers Uncertain with its
ReturnStatus bits (B.2: a Bad result would carry no output arguments).

Running: every ``seconds_per_unit`` each Running job order makes one unit (every
``scrap_every``-th is scrap) until its good quantity reaches the order's; then it is Ended.
An AllowedToStart job order starts when its equipment (the first EquipmentRequirement) has no
Running or Interrupted job order: the most urgent Priority first, then the first stored. Its
response is published every tenth of the order's quantity (at least every ten units) and
when its state changes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from pydantic import ValidationError

from plantsync.contracts.orders import JobOrderState
from plantsync.drivers.isa95 import (
    PRODUCED,
    REVISION,
    SCRAP,
    ISA95EquipmentDataType,
    ISA95JobOrderAndStateDataType,
    ISA95JobOrderDataType,
    ISA95JobResponseDataType,
    ISA95MaterialDataType,
    ISA95ParameterDataType,
    ISA95StateDataType,
    ReturnStatus,
    quantity_text,
)

State = JobOrderState
_PREPARED = frozenset({State.NOT_ALLOWED_TO_START, State.ALLOWED_TO_START})
_STARTED = frozenset({State.RUNNING, State.INTERRUPTED})
_COMMANDS: dict[str, tuple[frozenset[State], State | None]] = {
    "Start": (_PREPARED, State.ALLOWED_TO_START),
    "RevokeStart": (frozenset({State.ALLOWED_TO_START}), State.NOT_ALLOWED_TO_START),
    "Pause": (frozenset({State.RUNNING}), State.INTERRUPTED),
    "Resume": (frozenset({State.INTERRUPTED}), State.RUNNING),
    "Stop": (_STARTED, State.ENDED),
    "Abort": (_PREPARED | _STARTED, State.ABORTED),
    "Cancel": (_PREPARED, None),
    "Clear": (frozenset({State.ENDED, State.ABORTED}), None),
}
"""Command → (the states it is allowed in, the state it leads to; None: the job order is gone)."""

Handler = Callable[..., Awaitable[ua.CallMethodResult]]
_STRING, _UINT64 = ua.NodeId(ua.Int32(ObjectIds.String)), ua.NodeId(ua.Int32(ObjectIds.UInt64))
_LOCALIZED_TEXT = ua.NodeId(ua.Int32(ObjectIds.LocalizedText))


@dataclass
class _Job:
    """One job order the plant holds, and what running it has made so far."""

    order: ISA95JobOrderDataType
    state: State
    arrival: int
    good: Decimal = Decimal(0)
    scrap: Decimal = Decimal(0)
    steps: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    _texts: tuple[tuple[object, ...], str, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def equipment(self) -> str:
        return self.order.equipment_id or "unassigned"

    @property
    def target(self) -> tuple[Decimal, str]:
        produced = self.order.produced
        if produced is None:
            return Decimal(1), "pcs"
        return Decimal(produced.Quantity), produced.EngineeringUnits

    def step(self, scrap_every: int) -> bool:
        """Make one unit; True when it was the last one."""
        self.steps += 1
        target, _ = self.target
        if self.steps % scrap_every == 0:
            self.scrap += 1
        else:
            self.good += min(Decimal(1), target - self.good)
        return self.good >= target

    def texts(self) -> tuple[str, str | None]:
        """Its JobOrderList entry and, once started, its response, as JSON: made again only
        after the job changed, so publishing the lists costs per change, not per job held."""
        key = (self.order, self.state, self.good, self.scrap, self.started, self.ended)
        if self._texts is None or self._texts[0] != key:
            entry = self.and_state().model_dump_json(exclude_none=True)
            response = self.response().model_dump_json(exclude_none=True) if self.started else None
            self._texts = (key, entry, response)
        return self._texts[1], self._texts[2]

    def and_state(self) -> ISA95JobOrderAndStateDataType:
        return ISA95JobOrderAndStateDataType(
            JobOrder=self.order, State=[ISA95StateDataType(StateText=self.state.value)]
        )

    def response(self) -> ISA95JobResponseDataType:
        _, unit = self.target
        product = self.order.produced
        material = product.MaterialDefinitionID if product is not None else None
        lot = f"LOT-{self.order.JobOrderID}"
        return ISA95JobResponseDataType(
            JobResponseID=f"{self.order.JobOrderID}.response",
            JobOrderID=self.order.JobOrderID,
            StartTime=self.started,
            EndTime=self.ended,
            JobState=[ISA95StateDataType(StateText=self.state.value)],
            JobResponseData=[
                ISA95ParameterDataType(ID=REVISION, Value=str(self.order.revision or 1))
            ],
            EquipmentActuals=[ISA95EquipmentDataType(ID=self.equipment)],
            MaterialActuals=[
                ISA95MaterialDataType(
                    MaterialDefinitionID=material,
                    MaterialLotID=lot,
                    MaterialUse=use,
                    Quantity=quantity_text(quantity),
                    EngineeringUnits=unit,
                )
                for use, quantity in ((PRODUCED, self.good), (SCRAP, self.scrap))
            ],
        )

    def report_every(self) -> int:
        return max(1, min(10, math.ceil(self.target[0] / 10)))


class SimulatedJobControl:
    """A JobOrderReceiver and a JobResponseProvider on the simulated plant's server.

    Its job orders outlive a restart of the plant, as its machines' values do.
    """

    def __init__(
        self, *, seconds_per_unit: float = 1.0, scrap_every: int = 8, max_job_orders: int = 100
    ) -> None:
        if seconds_per_unit <= 0 or scrap_every < 2:
            raise ValueError("seconds_per_unit must be positive and scrap_every at least 2")
        self.seconds_per_unit = seconds_per_unit
        self.scrap_every = scrap_every
        self.max_job_orders = max_job_orders
        self._jobs: dict[str, _Job] = {}
        self._arrivals = 0
        self._server: Server | None = None
        self._lists: dict[str, ua.NodeId] = {}
        self._written: dict[str, list[str]] = {}
        self._runner: asyncio.Task[None] | None = None

    def state(self, job_order_id: str) -> JobOrderState | None:
        """A job order's state now; None when the plant does not hold it."""
        job = self._jobs.get(job_order_id)
        return job.state if job is not None else None

    async def build(self, server: Server, namespace_index: int) -> None:
        """Add the receiver and the provider to a server being built."""
        self._server, self._written = server, {}
        ns = namespace_index
        objects = server.nodes.objects
        receiver = await objects.add_object(f"ns={ns};s=JobOrderReceiver", f"{ns}:JobOrderReceiver")
        for name in ("Store", "StoreAndStart", "Update"):
            await _method(receiver, ns, name, self._receive(name), "JobOrder")
        for name in _COMMANDS:
            await _method(receiver, ns, name, self._command(name), "JobOrderID")
        await receiver.add_property(
            f"ns={ns};s=JobOrderReceiver.MaxDownloadableJobOrders",
            f"{ns}:MaxDownloadableJobOrders",
            ua.Variant(self.max_job_orders, ua.VariantType.UInt16),
        )
        provider = await objects.add_object(
            f"ns={ns};s=JobResponseProvider", f"{ns}:JobResponseProvider"
        )
        await _method(
            provider, ns, "RequestJobResponseByJobOrderID", self._request_response, "JobOrderID"
        )
        lists = (("JobOrderReceiver", receiver), ("JobResponseProvider", provider))
        for (owner, parent), name in zip(
            lists, ("JobOrderList", "JobOrderResponseList"), strict=True
        ):
            node = await parent.add_variable(
                f"ns={ns};s={owner}.{name}",
                f"{ns}:{name}",
                ua.Variant([], ua.VariantType.String),
            )
            self._lists[name] = node.nodeid

    async def start(self) -> None:
        """Publish the job orders held and start running them."""
        await self._publish()
        self._runner = asyncio.create_task(self._run(), name="plant-job-control")

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)

    # -- the methods -------------------------------------------------------------------------

    def _receive(self, name: str) -> Handler:
        async def receive(
            _: ua.NodeId, job_order: ua.Variant, *__: ua.Variant
        ) -> ua.CallMethodResult:
            try:
                order = ISA95JobOrderDataType.model_validate_json(str(job_order.Value))
            except ValidationError:
                return _result(ReturnStatus.INVALID_REQUEST)
            status = self._store(name, order)
            await self._publish()
            return _result(status)

        return receive

    def _store(self, name: str, order: ISA95JobOrderDataType) -> ReturnStatus:
        job = self._jobs.get(order.JobOrderID)
        if name == "Update":
            if job is None:
                return ReturnStatus.UNKNOWN_JOB_ORDER_ID
            if job.state not in _PREPARED:
                return ReturnStatus.INVALID_JOB_ORDER_STATUS
            job.order = order
            return ReturnStatus.NO_ERROR
        if job is not None or len(self._jobs) >= self.max_job_orders:
            return ReturnStatus.UNABLE_TO_ACCEPT_JOB_ORDER
        self._arrivals += 1
        state = State.ALLOWED_TO_START if name == "StoreAndStart" else State.NOT_ALLOWED_TO_START
        self._jobs[order.JobOrderID] = _Job(order, state, self._arrivals)
        return ReturnStatus.NO_ERROR

    def _command(self, name: str) -> Handler:
        allowed, target = _COMMANDS[name]

        async def command(
            _: ua.NodeId, job_order_id: ua.Variant, *__: ua.Variant
        ) -> ua.CallMethodResult:
            job = self._jobs.get(str(job_order_id.Value))
            if job is None:
                return _result(ReturnStatus.UNKNOWN_JOB_ORDER_ID)
            if job.state not in allowed:
                return _result(ReturnStatus.INVALID_JOB_ORDER_STATUS)
            if target is None:
                del self._jobs[job.order.JobOrderID]
            else:
                job.state = target
                if target in (State.ENDED, State.ABORTED):
                    job.ended = datetime.now(UTC)
            await self._publish()
            return _result(ReturnStatus.NO_ERROR)

        return command

    async def _request_response(
        self, _: ua.NodeId, job_order_id: ua.Variant
    ) -> ua.CallMethodResult:
        job = self._jobs.get(str(job_order_id.Value))
        if job is None or job.state in _PREPARED:
            return _result(ReturnStatus.UNKNOWN_JOB_ORDER_ID, ua.Variant("", ua.VariantType.String))
        text = job.response().model_dump_json(exclude_none=True)
        return _result(ReturnStatus.NO_ERROR, ua.Variant(text, ua.VariantType.String))

    # -- running -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.seconds_per_unit)
            if self._advance():
                await self._publish()

    def _advance(self) -> bool:
        """One unit of time on every machine; True when a response or a state changed."""
        changed = False
        now = datetime.now(UTC)
        for job in self._jobs.values():
            if job.state is State.RUNNING:
                if job.step(self.scrap_every):
                    job.state, job.ended = State.ENDED, now
                changed = changed or job.state is State.ENDED or not job.steps % job.report_every()
        busy = {job.equipment for job in self._jobs.values() if job.state in _STARTED}
        waiting = [job for job in self._jobs.values() if job.state is State.ALLOWED_TO_START]
        for job in sorted(waiting, key=lambda j: (j.order.Priority or 1000, j.arrival)):
            if job.equipment not in busy:
                job.state, job.started = State.RUNNING, now
                busy.add(job.equipment)
                changed = True
        return changed

    async def _publish(self) -> None:
        """Write both lists, where they changed."""
        texts = [job.texts() for job in self._jobs.values()]
        await self._write(
            "JobOrderResponseList", [response for _, response in texts if response is not None]
        )
        await self._write("JobOrderList", [entry for entry, _ in texts])

    async def _write(self, name: str, value: list[str]) -> None:
        if self._server is None or self._written.get(name) == value:
            return
        self._written[name] = value
        now = cast(ua.DateTime, datetime.now(UTC))
        await self._server.write_attribute_value(
            self._lists[name],
            ua.DataValue(
                ua.Variant(value, ua.VariantType.String), SourceTimestamp=now, ServerTimestamp=now
            ),
        )


async def _method(parent: Node, ns: int, name: str, handler: Handler, first: str) -> None:
    """A Job Control method: (``first``: String, Comment: LocalizedText[]) -> ReturnStatus."""
    identifier = str(parent.nodeid.Identifier)
    inputs = [ua.Argument(Name=first, DataType=_STRING, ValueRank=-1)]
    outputs = [ua.Argument(Name="ReturnStatus", DataType=_UINT64, ValueRank=-1)]
    if name == "RequestJobResponseByJobOrderID":
        outputs.insert(
            0,
            ua.Argument(Name="JobResponse", DataType=_STRING, ValueRank=-1),
        )
    else:
        inputs.append(ua.Argument(Name="Comment", DataType=_LOCALIZED_TEXT, ValueRank=1))
    await parent.add_method(
        f"ns={ns};s={identifier}.{name}", f"{ns}:{name}", handler, inputs, outputs
    )


def _result(status: ReturnStatus, *outputs: ua.Variant) -> ua.CallMethodResult:
    code = StatusCodes.Good if status == ReturnStatus.NO_ERROR else StatusCodes.Uncertain
    return ua.CallMethodResult(
        StatusCode=ua.StatusCode(ua.UInt32(code)),
        OutputArguments=[*outputs, ua.Variant(int(status), ua.VariantType.UInt64)],
    )

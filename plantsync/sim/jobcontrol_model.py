"""The job orders the simulated plant holds and the state machine they follow (OPC 10031-4 v2,
6.2.1): what each Job Control method does, and what running an order makes.

    Store ─▶ NotAllowedToStart ─Start─▶ AllowedToStart ─(machine free)─▶ Running ─▶ Ended
    StoreAndStart ─────────────────────▶ AllowedToStart ◀─RevokeStart─┘    │  ▲
                                                         Pause ─▶ Interrupted ─Resume
    Update: NotAllowedToStart / AllowedToStart only       Stop: Running, Interrupted ─▶ Ended
    Cancel: not started ─▶ removed                        Abort: not ended ─▶ Aborted
    Clear: Ended, Aborted ─▶ removed

No OPC UA here: ``sim.jobcontrol`` puts it on a server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from plantsync.contracts.orders import JobOrderState
from plantsync.drivers.jobcontrol.isa95 import (
    PRODUCED,
    REVISION,
    SCRAP,
    ISA95EquipmentDataType,
    ISA95JobOrderDataType,
    ISA95JobResponseDataType,
    ISA95MaterialDataType,
    ISA95ParameterDataType,
    ReturnStatus,
    quantity_text,
    state,
)

State = JobOrderState
PREPARED = frozenset({State.NOT_ALLOWED_TO_START, State.ALLOWED_TO_START})
STARTED = frozenset({State.RUNNING, State.INTERRUPTED})
STORES = ("Store", "StoreAndStart", "Update")
COMMANDS: dict[str, tuple[frozenset[State], State | None]] = {
    "Start": (frozenset({State.NOT_ALLOWED_TO_START}), State.ALLOWED_TO_START),
    "RevokeStart": (frozenset({State.ALLOWED_TO_START}), State.NOT_ALLOWED_TO_START),
    "Pause": (frozenset({State.RUNNING}), State.INTERRUPTED),
    "Resume": (frozenset({State.INTERRUPTED}), State.RUNNING),
    "Stop": (STARTED, State.ENDED),
    "Abort": (PREPARED | STARTED, State.ABORTED),
    "Cancel": (PREPARED, None),
    "Clear": (frozenset({State.ENDED, State.ABORTED}), None),
}
"""Command → (the states it is allowed in, the state it leads to; None: the job order is gone)."""


@dataclass
class Job:
    """One job order the plant holds, and what running it has made so far."""

    order: ISA95JobOrderDataType
    state: State
    arrival: int
    good: Decimal = Decimal(0)
    scrap: Decimal = Decimal(0)
    steps: int = 0
    started: datetime | None = None
    ended: datetime | None = None

    @property
    def equipment(self) -> str:
        return self.order.equipment_id or "unassigned"

    @property
    def target(self) -> tuple[Decimal, str]:
        produced = self.order.produced
        if produced is None or produced.Quantity is None:
            return Decimal(1), "pcs"
        return Decimal(produced.Quantity), produced.EngineeringUnits or "pcs"

    def version(self) -> tuple[object, ...]:
        """Changes whenever its JobOrderList entry or its response would."""
        return (id(self.order), self.state, self.good, self.scrap, self.started, self.ended)

    def step(self, scrap_every: int) -> bool:
        """Make one unit; True when it was the last one."""
        self.steps += 1
        target, _ = self.target
        if self.steps % scrap_every == 0:
            self.scrap += 1
        else:
            self.good += min(Decimal(1), target - self.good)
        return self.good >= target

    def response(self) -> ISA95JobResponseDataType:
        _, unit = self.target
        product = self.order.produced
        material = product.MaterialDefinitionID if product is not None else None
        return ISA95JobResponseDataType(
            JobResponseID=f"{self.order.JobOrderID}.response",
            JobOrderID=self.order.JobOrderID,
            StartTime=self.started,
            EndTime=self.ended,
            JobState=[state(self.state)],
            JobResponseData=[ISA95ParameterDataType(ID=REVISION, Value=self.order.revision or 1)],
            EquipmentActuals=[ISA95EquipmentDataType(ID=self.equipment)],
            MaterialActuals=[
                ISA95MaterialDataType(
                    MaterialDefinitionID=material,
                    MaterialLotID=f"LOT-{self.order.JobOrderID}",
                    MaterialUse=use,
                    Quantity=quantity_text(quantity),
                    EngineeringUnits=unit,
                )
                for use, quantity in ((PRODUCED, self.good), (SCRAP, self.scrap))
            ],
        )

    def report_every(self) -> int:
        return max(1, min(10, math.ceil(self.target[0] / 10)))


class JobOrders:
    """The receiver's job orders: the methods' effects, and one unit of time on the machines."""

    def __init__(self, *, max_job_orders: int = 100, scrap_every: int = 8) -> None:
        self.max_job_orders = max_job_orders
        self.scrap_every = scrap_every
        self.jobs: dict[str, Job] = {}
        self._arrivals = 0

    def store(self, method: str, order: ISA95JobOrderDataType) -> ReturnStatus:
        """Store, StoreAndStart or Update."""
        job = self.jobs.get(order.JobOrderID)
        if method == "Update":
            if job is None:
                return ReturnStatus.UNKNOWN_JOB_ORDER_ID
            if job.state not in PREPARED:
                return ReturnStatus.INVALID_JOB_ORDER_STATUS
            job.order = order
            return ReturnStatus.NO_ERROR
        if job is not None or len(self.jobs) >= self.max_job_orders:
            return ReturnStatus.UNABLE_TO_ACCEPT_JOB_ORDER
        self._arrivals += 1
        first = State.ALLOWED_TO_START if method == "StoreAndStart" else State.NOT_ALLOWED_TO_START
        self.jobs[order.JobOrderID] = Job(order, first, self._arrivals)
        return ReturnStatus.NO_ERROR

    def command(self, method: str, job_order_id: str) -> ReturnStatus:
        """Start, RevokeStart, Pause, Resume, Stop, Abort, Cancel or Clear."""
        allowed, target = COMMANDS[method]
        job = self.jobs.get(job_order_id)
        if job is None:
            return ReturnStatus.UNKNOWN_JOB_ORDER_ID
        if job.state not in allowed:
            return ReturnStatus.INVALID_JOB_ORDER_STATUS
        if target is None:
            del self.jobs[job_order_id]
        else:
            job.state = target
            if target in (State.ENDED, State.ABORTED):
                job.ended = datetime.now(UTC)
        return ReturnStatus.NO_ERROR

    def advance(self) -> bool:
        """One unit of time on every machine; True when a response or a state changed.

        An AllowedToStart job order starts when its equipment has no Running or Interrupted
        one: the most urgent Priority first, then the first stored."""
        changed = False
        now = datetime.now(UTC)
        for job in self.jobs.values():
            if job.state is State.RUNNING:
                if job.step(self.scrap_every):
                    job.state, job.ended = State.ENDED, now
                changed = changed or job.state is State.ENDED or not job.steps % job.report_every()
        busy = {job.equipment for job in self.jobs.values() if job.state in STARTED}
        waiting = [job for job in self.jobs.values() if job.state is State.ALLOWED_TO_START]
        for job in sorted(waiting, key=lambda j: (j.order.Priority or 1000, j.arrival)):
            if job.equipment not in busy:
                job.state, job.started = State.RUNNING, now
                busy.add(job.equipment)
                changed = True
        return changed

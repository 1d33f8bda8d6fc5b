"""The ISA-95 Job Control (OPC 10031-4 v2) values plantsync exchanges, and their translation.

On the wire the job orders and job responses are the spec's structures (ExtensionObjects of the
types in the official nodeset, ``drivers.jobcontrol.codec`` converts); here they are plantsync's
view of them: the fields it sends or reads, typed, frozen.

    ProductionOrder ─job_order()─▶ ISA95JobOrderDataType
        JobOrderID               the order id
        Description              "<product> for <work center>"
        WorkMasterID             [the product id]  (the work master that makes it)
        StartTime / EndTime      planned_start / planned_end
        Priority                 priority (Int16, 1 is the most urgent)
        JobOrderParameters       Revision (Int32), ProductID, WorkCenter, RequestState,
                                 IdempotencyKey (String)
        EquipmentRequirements    equipment_id, else the work center (EquipmentUse "Production")
        MaterialRequirements     the product (MaterialUse Produced, the order quantity), then
                                 the order's materials; Quantity a DecimalString, the unit an
                                 EUInformation (UNECE code where known, ``units``)

    JobOrderList entry   ─order_status()─▶  OrderStatus
    JobOrderResponseList ─confirmation()─▶  ProductionConfirmation

A job response reports what was made in MaterialActuals: MaterialUse ``Produced`` is the good
quantity, ``Scrap`` (an implementation-specific use) the scrap, both cumulative.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from plantsync.contracts.orders import JobOrderState, OrderStatus, ProductionConfirmation
from plantsync.contracts.schedule import MaterialUse, ProductionOrder, Quantity, RequestState

_logger = logging.getLogger(__name__)

PRODUCED = MaterialUse.PRODUCED.value
SCRAP = "Scrap"
"""MaterialUse of scrapped output in a job response: an implementation-specific value."""
PRODUCTION = "Production"
"""EquipmentUse of the equipment a job order runs on."""

REVISION, PRODUCT_ID, WORK_CENTER = "Revision", "ProductID", "WorkCenter"
REQUEST_STATE, IDEMPOTENCY_KEY = "RequestState", "IdempotencyKey"

STATE_NUMBERS = {
    JobOrderState.NOT_ALLOWED_TO_START: 1,
    JobOrderState.ALLOWED_TO_START: 2,
    JobOrderState.RUNNING: 3,
    JobOrderState.INTERRUPTED: 4,
    JobOrderState.ENDED: 5,
    JobOrderState.ABORTED: 6,
}
"""StateNumber of each state of the job order state machine (the nodeset's StateNumber)."""
_BY_NUMBER = {number: state for state, number in STATE_NUMBERS.items()}


class ReturnStatus(enum.IntFlag):
    """The ReturnStatus bits of every Job Control method (OPC 10031-4 v2, Annex B.2)."""

    NO_ERROR = 1 << 0
    UNKNOWN_JOB_ORDER_ID = 1 << 1
    INVALID_JOB_ORDER_STATUS = 1 << 3
    UNABLE_TO_ACCEPT_JOB_ORDER = 1 << 4
    INVALID_REQUEST = 1 << 32


_NAMES = {
    ReturnStatus.UNKNOWN_JOB_ORDER_ID: "UnknownJobOrderId",
    ReturnStatus.INVALID_JOB_ORDER_STATUS: "InvalidJobOrderStatus",
    ReturnStatus.UNABLE_TO_ACCEPT_JOB_ORDER: "UnableToAcceptJobOrder",
    ReturnStatus.INVALID_REQUEST: "InvalidRequest",
}
_MEANINGS = {
    ReturnStatus.UNKNOWN_JOB_ORDER_ID: "the server does not hold this job order",
    ReturnStatus.INVALID_JOB_ORDER_STATUS: "not allowed in the job order's current state",
    ReturnStatus.UNABLE_TO_ACCEPT_JOB_ORDER: "the server cannot take the job order "
    "(already stored, or full)",
    ReturnStatus.INVALID_REQUEST: "the server found the request invalid",
}


def describe(return_status: int) -> str:
    """The error bits of a ReturnStatus by name, e.g. ``UnknownJobOrderId``; others by number
    (bits 33-63 are implementation-specific, 2 and 5-31 reserved)."""
    names = [name for bit, name in _NAMES.items() if return_status & bit]
    known = ReturnStatus.NO_ERROR.value | sum(bit.value for bit in _NAMES)
    names += [f"bit {n}" for n in range(64) if return_status & ~known & (1 << n)]
    return ", ".join(names) or f"ReturnStatus {return_status}"


def explain(return_status: int) -> str:
    """Each error bit by name and what it means, for an ack's reason."""
    known = [
        f"{_NAMES[bit]} ({meaning})" for bit, meaning in _MEANINGS.items() if return_status & bit
    ]
    rest = return_status & ~(ReturnStatus.NO_ERROR.value | sum(bit.value for bit in _NAMES))
    if rest:
        known.append(f"{describe(rest)} (implementation-specific)")
    return "; ".join(known) or describe(return_status)


ParameterValue = bool | int | float | Decimal | str | datetime | None


class _View(BaseModel):
    # A view: the server's structures carry more than plantsync reads.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ISA95ParameterDataType(_View):
    ID: str
    Value: ParameterValue = None
    EngineeringUnits: str | None = None


class ISA95EquipmentDataType(_View):
    ID: str
    EquipmentUse: str | None = None


class ISA95MaterialDataType(_View):
    MaterialDefinitionID: str | None = None
    MaterialLotID: str | None = None
    MaterialUse: str | None = None
    Quantity: str | None = None
    EngineeringUnits: str | None = None


class ISA95StateDataType(_View):
    StateText: str
    StateNumber: int | None = None


class ISA95JobOrderDataType(_View):
    JobOrderID: str
    Description: str | None = None
    WorkMasterID: list[str] = []
    StartTime: AwareDatetime | None = None
    EndTime: AwareDatetime | None = None
    Priority: int | None = None
    JobOrderParameters: list[ISA95ParameterDataType] = []
    PersonnelRequirements: list[str] = []
    EquipmentRequirements: list[ISA95EquipmentDataType] = []
    PhysicalAssetRequirements: list[str] = []
    MaterialRequirements: list[ISA95MaterialDataType] = []

    def parameter(self, parameter_id: str) -> ParameterValue:
        return _parameter(self.JobOrderParameters, parameter_id)

    @property
    def revision(self) -> int:
        """The plantsync revision it carries; 0 when it has none (stored by someone else)."""
        return _integer(self.parameter(REVISION))

    @property
    def equipment_id(self) -> str | None:
        return self.EquipmentRequirements[0].ID if self.EquipmentRequirements else None

    @property
    def produced(self) -> ISA95MaterialDataType | None:
        return next((m for m in self.MaterialRequirements if m.MaterialUse == PRODUCED), None)


class ISA95JobOrderAndStateDataType(_View):
    JobOrder: ISA95JobOrderDataType
    State: list[ISA95StateDataType] = Field(min_length=1)

    @property
    def state(self) -> JobOrderState:
        return _state(self.State[0])


class ISA95JobResponseDataType(_View):
    JobResponseID: str
    JobOrderID: str
    StartTime: AwareDatetime | None = None
    EndTime: AwareDatetime | None = None
    JobState: list[ISA95StateDataType] = Field(min_length=1)
    JobResponseData: list[ISA95ParameterDataType] = []
    EquipmentActuals: list[ISA95EquipmentDataType] = []
    MaterialActuals: list[ISA95MaterialDataType] = []

    @property
    def state(self) -> JobOrderState:
        return _state(self.JobState[0])

    def actual(self, use: str) -> ISA95MaterialDataType | None:
        return next((m for m in self.MaterialActuals if m.MaterialUse == use), None)


def state(value: JobOrderState) -> ISA95StateDataType:
    """The top-level state of a job order, as the JobOrderList reports it."""
    return ISA95StateDataType(StateText=value.value, StateNumber=STATE_NUMBERS[value])


def job_order(order: ProductionOrder, idempotency_key: str) -> ISA95JobOrderDataType:
    """The job order that asks the plant to run ``order`` as HQ sent it."""
    parameters: dict[str, ParameterValue] = {
        REVISION: order.revision,
        PRODUCT_ID: order.product_id,
        WORK_CENTER: order.work_center,
        REQUEST_STATE: order.request_state.value,
        IDEMPOTENCY_KEY: idempotency_key,
    }
    product = ISA95MaterialDataType(
        MaterialDefinitionID=order.product_id,
        MaterialUse=PRODUCED,
        Quantity=quantity_text(order.quantity.value),
        EngineeringUnits=order.quantity.unit,
    )
    materials = [
        ISA95MaterialDataType(
            MaterialDefinitionID=material.material_id,
            MaterialUse=material.use.value,
            Quantity=quantity_text(material.quantity.value),
            EngineeringUnits=material.quantity.unit,
        )
        for material in order.materials
    ]
    equipment = order.equipment_id or order.work_center
    return ISA95JobOrderDataType(
        JobOrderID=order.order_id,
        Description=f"{order.product_id} for {order.work_center}",
        WorkMasterID=[order.product_id],
        StartTime=order.planned_start,
        EndTime=order.planned_end,
        Priority=order.priority,
        JobOrderParameters=[ISA95ParameterDataType(ID=k, Value=v) for k, v in parameters.items()],
        EquipmentRequirements=[ISA95EquipmentDataType(ID=equipment, EquipmentUse=PRODUCTION)],
        MaterialRequirements=[product, *materials],
    )


def order_status(entry: ISA95JobOrderAndStateDataType, changed_at: datetime) -> OrderStatus | None:
    """The ``order.status`` of one JobOrderList entry; None for one plantsync cannot report."""
    order = entry.JobOrder
    request_state = order.parameter(REQUEST_STATE)
    try:
        return OrderStatus(
            order_id=order.JobOrderID,
            revision=order.revision,
            state=entry.state,
            request_state=RequestState(str(request_state)) if request_state else None,
            equipment_id=order.equipment_id,
            changed_at=changed_at,
        )
    except ValueError as exc:  # pydantic's ValidationError, or an unknown enum value
        _logger.debug("job order %s not reported: %s", order.JobOrderID, exc)
        return None


def confirmation(
    response: ISA95JobResponseDataType, reported_at: datetime
) -> ProductionConfirmation | None:
    """The ``production.confirmation`` of one job response, cumulative; final once Ended or
    Aborted. None before anything was made, or when the response cannot be read."""
    good, scrap = response.actual(PRODUCED), response.actual(SCRAP)
    if response.StartTime is None or good is None:
        return None
    try:
        final = response.state in (JobOrderState.ENDED, JobOrderState.ABORTED)
        unit = good.EngineeringUnits or "pcs"
        good_quantity = _quantity(good.Quantity or "0", unit)
        scrap_quantity = _quantity(scrap.Quantity if scrap and scrap.Quantity else "0", unit)
        if not final and good_quantity.value == scrap_quantity.value == 0:
            return None  # started, nothing made yet
        return ProductionConfirmation(
            confirmation_id=_confirmation_id(response, good_quantity, scrap_quantity, final),
            order_id=response.JobOrderID,
            revision=_integer(_parameter(response.JobResponseData, REVISION)),
            good_quantity=good_quantity,
            scrap_quantity=scrap_quantity,
            actual_start=response.StartTime,
            actual_end=response.EndTime or max(reported_at, response.StartTime),
            equipment_id=response.EquipmentActuals[0].ID if response.EquipmentActuals else None,
            material_lot=good.MaterialLotID,
            final=final,
        )
    except ValueError as exc:  # pydantic's ValidationError, an unknown state, a bad number
        _logger.debug("job response %s not reported: %s", response.JobResponseID, exc)
        return None


def quantity_text(value: Decimal) -> str:
    """A quantity as a DecimalString carries it: plain decimal notation."""
    return format(value, "f")


def _state(value: ISA95StateDataType) -> JobOrderState:
    """By StateNumber, which does not depend on a locale; else by its text."""
    if value.StateNumber in _BY_NUMBER:
        return _BY_NUMBER[value.StateNumber]
    return JobOrderState(value.StateText)


def _confirmation_id(
    response: ISA95JobResponseDataType, good: Quantity, scrap: Quantity, final: bool
) -> str:
    """The same report gives the same id, so HQ recognises one sent again after a reconnect."""
    suffix = ":final" if final else ""
    return f"{response.JobResponseID}:{good.value:f}:{scrap.value:f}{suffix}"[:128]


def _quantity(text: str, unit: str) -> Quantity:
    # Validated from the wire form: a decimal string, exactly as the server sent it.
    return Quantity.model_validate({"value": text, "unit": unit})


def _integer(value: ParameterValue) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def _parameter(parameters: list[ISA95ParameterDataType], parameter_id: str) -> ParameterValue:
    return next((p.Value for p in parameters if parameter_id == p.ID), None)

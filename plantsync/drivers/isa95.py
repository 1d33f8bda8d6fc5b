"""The ISA-95 Job Control (OPC 10031-4 v2) values plantsync exchanges, and their translation.

The spec passes job orders and job responses as OPC UA structures. plantsync, and the simulated
plant, carry them as JSON text with the spec's structure and field names instead, so that no
client needs the ISA-95 type dictionary at run time:

    Store / Update (JobOrder: String, Comment: LocalizedText[]) -> ReturnStatus: UInt64
        JobOrder      the JSON of one ISA95JobOrderDataType
    JobOrderList      String[], the JSON of one ISA95JobOrderAndStateDataType each
    JobOrderResponseList
                      String[], the JSON of one ISA95JobResponseDataType each

Simplified: EngineeringUnits is the unit's text (not an EUInformation); StateText is a plain
string; only the top-level state is given (no substates). ``ISA95ParameterDataType.Value`` is a
string. What a plantsync job order carries:

    JobOrderID               the order id
    StartTime / EndTime      planned_start / planned_end
    Priority                 priority (1 is the most urgent)
    JobOrderParameters       Revision, ProductID, WorkCenter, RequestState, IdempotencyKey
    EquipmentRequirements    equipment_id, else the work center
    MaterialRequirements     the product (Produced, the order quantity), then the order's materials

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

REVISION, PRODUCT_ID, WORK_CENTER = "Revision", "ProductID", "WorkCenter"
REQUEST_STATE, IDEMPOTENCY_KEY = "RequestState", "IdempotencyKey"


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


def describe(return_status: int) -> str:
    """The error bits of a ReturnStatus by name, e.g. ``UnknownJobOrderId``; others by number
    (bits 33-63 are implementation-specific)."""
    names = [name for bit, name in _NAMES.items() if return_status & bit]
    known = ReturnStatus.NO_ERROR.value | sum(bit.value for bit in _NAMES)
    names += [f"bit {n}" for n in range(64) if return_status & ~known & (1 << n)]
    return ", ".join(names) or f"ReturnStatus {return_status}"


class _Wire(BaseModel):
    # Servers may send more than plantsync reads.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ISA95ParameterDataType(_Wire):
    ID: str
    Value: str


class ISA95EquipmentDataType(_Wire):
    ID: str


class ISA95MaterialDataType(_Wire):
    MaterialDefinitionID: str | None = None
    MaterialLotID: str | None = None
    MaterialUse: str
    Quantity: str
    EngineeringUnits: str


class ISA95StateDataType(_Wire):
    StateText: str


class ISA95JobOrderDataType(_Wire):
    JobOrderID: str
    StartTime: AwareDatetime | None = None
    EndTime: AwareDatetime | None = None
    Priority: int | None = None
    JobOrderParameters: list[ISA95ParameterDataType] = []
    EquipmentRequirements: list[ISA95EquipmentDataType] = []
    MaterialRequirements: list[ISA95MaterialDataType] = []

    def parameter(self, parameter_id: str) -> str | None:
        return _parameter(self.JobOrderParameters, parameter_id)

    @property
    def revision(self) -> int:
        """The plantsync revision it carries; 0 when it has none (stored by someone else)."""
        value = self.parameter(REVISION)
        return int(value) if value is not None and value.isdigit() else 0

    @property
    def equipment_id(self) -> str | None:
        return self.EquipmentRequirements[0].ID if self.EquipmentRequirements else None

    @property
    def produced(self) -> ISA95MaterialDataType | None:
        return next((m for m in self.MaterialRequirements if m.MaterialUse == PRODUCED), None)


class ISA95JobOrderAndStateDataType(_Wire):
    JobOrder: ISA95JobOrderDataType
    State: list[ISA95StateDataType] = Field(min_length=1)

    @property
    def state(self) -> JobOrderState:
        return JobOrderState(self.State[0].StateText)


class ISA95JobResponseDataType(_Wire):
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
        return JobOrderState(self.JobState[0].StateText)

    def actual(self, use: str) -> ISA95MaterialDataType | None:
        return next((m for m in self.MaterialActuals if m.MaterialUse == use), None)


def job_order(order: ProductionOrder, idempotency_key: str) -> ISA95JobOrderDataType:
    """The job order that asks the plant to run ``order`` as HQ sent it."""
    parameters = {
        REVISION: str(order.revision),
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
    return ISA95JobOrderDataType(
        JobOrderID=order.order_id,
        StartTime=order.planned_start,
        EndTime=order.planned_end,
        Priority=order.priority,
        JobOrderParameters=[ISA95ParameterDataType(ID=k, Value=v) for k, v in parameters.items()],
        EquipmentRequirements=[ISA95EquipmentDataType(ID=order.equipment_id or order.work_center)],
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
            request_state=RequestState(request_state) if request_state else None,
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
        good_quantity = _quantity(good.Quantity, good.EngineeringUnits)
        scrap_quantity = _quantity(scrap.Quantity if scrap else "0", good.EngineeringUnits)
        if not final and good_quantity.value == scrap_quantity.value == 0:
            return None  # started, nothing made yet
        return ProductionConfirmation(
            confirmation_id=_confirmation_id(response, good_quantity, scrap_quantity, final),
            order_id=response.JobOrderID,
            revision=int(_parameter(response.JobResponseData, REVISION) or "0"),
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
    """A quantity as ISA95MaterialDataType.Quantity carries it: plain decimal notation."""
    return format(value, "f")


def _confirmation_id(
    response: ISA95JobResponseDataType, good: Quantity, scrap: Quantity, final: bool
) -> str:
    """The same report gives the same id, so HQ recognises one sent again after a reconnect."""
    suffix = ":final" if final else ""
    return f"{response.JobResponseID}:{good.value:f}:{scrap.value:f}{suffix}"[:128]


def _quantity(text: str, unit: str) -> Quantity:
    # Validated from the wire form: a decimal string, exactly as the server sent it.
    return Quantity.model_validate({"value": text, "unit": unit})


def _parameter(parameters: list[ISA95ParameterDataType], parameter_id: str) -> str | None:
    return next((p.Value for p in parameters if parameter_id == p.ID), None)

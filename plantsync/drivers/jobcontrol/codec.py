"""plantsync's ISA-95 views (``isa95``) to and from the OPC UA structures of the
official Job Control nodeset, as asyncua builds them from the server's type definitions.

    ISA95JobOrderDataType (view) ──encode_job_order──▶ ua.ISA95JobOrderDataType ─▶ ExtensionObject
    ua.ISA95JobOrderAndStateDataType ──decode_job_order_and_state──▶ view
    ua.ISA95JobResponseDataType ──decode_job_response──▶ view   (and both ways for the simulator)

The ``ua`` classes exist only after ``load_data_type_definitions`` (client or server): they are
looked up by name when used, never imported. Units are EUInformation: the UNECE code of a unit
plantsync knows (``UNECE``), else UnitId -1; the DisplayName always carries plantsync's unit
text, so it reads back as it was sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from asyncua import ua
from asyncua.ua.object_ids import ObjectIds

from plantsync.drivers.jobcontrol import isa95
from plantsync.errors import LinkMisconfigured

NAMESPACE_URI = "http://opcfoundation.org/UA/ISA95-JOBCONTROL_V2/"
RECEIVER_TYPE = 1002
"""ISA95JobOrderReceiverObjectType, in NAMESPACE_URI."""
RESPONSE_PROVIDER_TYPE = 1003
"""ISA95JobResponseProviderObjectType, in NAMESPACE_URI."""
UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"

UNECE = {
    "pcs": "H87",
    "piece": "H87",
    "ea": "EA",
    "kg": "KGM",
    "g": "GRM",
    "t": "TNE",
    "l": "LTR",
    "m": "MTR",
    "m2": "MTK",
    "m3": "MTQ",
    "s": "SEC",
    "min": "MIN",
    "h": "HUR",
    "%": "P1",
}
"""plantsync unit text → UNECE Rec. 20 common code (OPC 10000-8, EUInformation)."""


def structure(name: str) -> Any:
    """The asyncua class of one Job Control structure; LinkMisconfigured before the server's
    definitions were loaded, or when it has none of that name."""
    found = getattr(ua, name, None)
    if found is None:
        raise LinkMisconfigured(f"the server defines no {name}: is it ISA-95 Job Control v2?")
    return found


def unit_id(common_code: str) -> int:
    """The UnitId of a UNECE common code: its characters, 8 bits each (OPC 10000-8 5.6.3)."""
    value = 0
    for character in common_code:
        value = value << 8 | ord(character)
    return value


def encode_units(unit: str | None) -> ua.EUInformation | None:
    if unit is None:
        return None
    code = UNECE.get(unit.lower())
    return ua.EUInformation(
        NamespaceUri=UNECE_URI,
        UnitId=ua.Int32(unit_id(code) if code else -1),
        DisplayName=ua.LocalizedText(unit),
        Description=ua.LocalizedText(code or unit),
    )


def decode_units(units: ua.EUInformation | None) -> str | None:
    if units is None:
        return None
    if units.DisplayName is not None and units.DisplayName.Text:
        return str(units.DisplayName.Text)
    by_id = {unit_id(code): text for text, code in UNECE.items()}
    return by_id.get(int(units.UnitId))


# -- job orders --------------------------------------------------------------------------------


def encode_job_order(job_order: isa95.ISA95JobOrderDataType) -> Any:
    """The ua.ISA95JobOrderDataType of a view: what Store, StoreAndStart and Update take."""
    return structure("ISA95JobOrderDataType")(
        JobOrderID=job_order.JobOrderID,
        Description=_texts(job_order.Description),
        WorkMasterID=[structure("ISA95WorkMasterDataType")(ID=i) for i in job_order.WorkMasterID]
        or None,
        StartTime=job_order.StartTime,
        EndTime=job_order.EndTime,
        Priority=ua.Int16(job_order.Priority) if job_order.Priority is not None else None,
        JobOrderParameters=[_encode_parameter(p) for p in job_order.JobOrderParameters] or None,
        PersonnelRequirements=_identified(
            "ISA95PersonnelDataType", job_order.PersonnelRequirements
        ),
        EquipmentRequirements=[_encode_equipment(e) for e in job_order.EquipmentRequirements]
        or None,
        PhysicalAssetRequirements=_identified(
            "ISA95PhysicalAssetDataType", job_order.PhysicalAssetRequirements
        ),
        MaterialRequirements=[_encode_material(m) for m in job_order.MaterialRequirements] or None,
    )


def decode_job_order(value: Any) -> isa95.ISA95JobOrderDataType:
    return isa95.ISA95JobOrderDataType(
        JobOrderID=value.JobOrderID,
        Description=_text(value.Description),
        WorkMasterID=[w.ID for w in value.WorkMasterID or []],
        StartTime=_utc(value.StartTime),
        EndTime=_utc(value.EndTime),
        Priority=value.Priority,
        JobOrderParameters=[_decode_parameter(p) for p in value.JobOrderParameters or []],
        PersonnelRequirements=[p.ID for p in value.PersonnelRequirements or []],
        EquipmentRequirements=[_decode_equipment(e) for e in value.EquipmentRequirements or []],
        PhysicalAssetRequirements=[p.ID for p in value.PhysicalAssetRequirements or []],
        MaterialRequirements=[_decode_material(m) for m in value.MaterialRequirements or []],
    )


def encode_job_order_and_state(
    job_order: Any, state: isa95.ISA95StateDataType, namespace_index: int
) -> Any:
    """One JobOrderList entry: the job order as stored (already a ua structure) and its state."""
    return structure("ISA95JobOrderAndStateDataType")(
        JobOrder=job_order, State=[_encode_state(state, namespace_index)]
    )


def decode_job_order_and_state(value: Any) -> isa95.ISA95JobOrderAndStateDataType:
    return isa95.ISA95JobOrderAndStateDataType(
        JobOrder=decode_job_order(value.JobOrder),
        State=[_decode_state(s) for s in value.State or []],
    )


# -- job responses -----------------------------------------------------------------------------


def encode_job_response(response: isa95.ISA95JobResponseDataType, namespace_index: int) -> Any:
    return structure("ISA95JobResponseDataType")(
        JobResponseID=response.JobResponseID,
        JobOrderID=response.JobOrderID,
        StartTime=response.StartTime,
        EndTime=response.EndTime,
        JobState=[_encode_state(s, namespace_index) for s in response.JobState],
        JobResponseData=[_encode_parameter(p) for p in response.JobResponseData] or None,
        EquipmentActuals=[_encode_equipment(e) for e in response.EquipmentActuals] or None,
        MaterialActuals=[_encode_material(m) for m in response.MaterialActuals] or None,
    )


def decode_job_response(value: Any) -> isa95.ISA95JobResponseDataType:
    return isa95.ISA95JobResponseDataType(
        JobResponseID=value.JobResponseID,
        JobOrderID=value.JobOrderID,
        StartTime=_utc(value.StartTime),
        EndTime=_utc(value.EndTime),
        JobState=[_decode_state(s) for s in value.JobState or []],
        JobResponseData=[_decode_parameter(p) for p in value.JobResponseData or []],
        EquipmentActuals=[_decode_equipment(e) for e in value.EquipmentActuals or []],
        MaterialActuals=[_decode_material(m) for m in value.MaterialActuals or []],
    )


# -- the parts ---------------------------------------------------------------------------------


def _encode_parameter(parameter: isa95.ISA95ParameterDataType) -> Any:
    return structure("ISA95ParameterDataType")(
        ID=parameter.ID,
        Value=_variant(parameter.Value),
        EngineeringUnits=encode_units(parameter.EngineeringUnits),
    )


def _decode_parameter(value: Any) -> isa95.ISA95ParameterDataType:
    variant = value.Value
    inner = variant.Value if isinstance(variant, ua.Variant) else variant
    return isa95.ISA95ParameterDataType(
        ID=value.ID,
        Value=inner if isinstance(inner, bool | int | float | str | datetime) else None,
        EngineeringUnits=decode_units(value.EngineeringUnits),
    )


def _variant(value: isa95.ParameterValue) -> ua.Variant:
    """A typed value: Int32 for whole numbers, Double, Boolean, DateTime, String; a Decimal as
    its decimal text (OPC UA's Decimal is rarely implemented)."""
    if value is None:
        return ua.Variant()
    if isinstance(value, bool):
        return ua.Variant(value, ua.VariantType.Boolean)
    if isinstance(value, int):
        return ua.Variant(value, ua.VariantType.Int32)
    if isinstance(value, float):
        return ua.Variant(value, ua.VariantType.Double)
    if isinstance(value, datetime):
        return ua.Variant(value, ua.VariantType.DateTime)
    if isinstance(value, Decimal):
        return ua.Variant(isa95.quantity_text(value), ua.VariantType.String)
    return ua.Variant(value, ua.VariantType.String)


def _encode_equipment(equipment: isa95.ISA95EquipmentDataType) -> Any:
    return structure("ISA95EquipmentDataType")(ID=equipment.ID, EquipmentUse=equipment.EquipmentUse)


def _decode_equipment(value: Any) -> isa95.ISA95EquipmentDataType:
    return isa95.ISA95EquipmentDataType(ID=value.ID, EquipmentUse=value.EquipmentUse)


def _identified(name: str, ids: Iterable[str]) -> list[Any] | None:
    return [structure(name)(ID=i) for i in ids] or None


def _encode_material(material: isa95.ISA95MaterialDataType) -> Any:
    return structure("ISA95MaterialDataType")(
        MaterialDefinitionID=material.MaterialDefinitionID,
        MaterialLotID=material.MaterialLotID,
        MaterialUse=material.MaterialUse,
        Quantity=material.Quantity,
        EngineeringUnits=encode_units(material.EngineeringUnits),
    )


def _decode_material(value: Any) -> isa95.ISA95MaterialDataType:
    return isa95.ISA95MaterialDataType(
        MaterialDefinitionID=value.MaterialDefinitionID,
        MaterialLotID=value.MaterialLotID,
        MaterialUse=value.MaterialUse,
        Quantity=value.Quantity,
        EngineeringUnits=decode_units(value.EngineeringUnits),
    )


def _encode_state(state: isa95.ISA95StateDataType, namespace_index: int) -> Any:
    path = ua.RelativePath(
        Elements=[
            ua.RelativePathElement(
                ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HasComponent)),
                TargetName=ua.QualifiedName(state.StateText, namespace_index),
            )
        ]
    )
    return structure("ISA95StateDataType")(
        BrowsePath=path,
        StateText=ua.LocalizedText(state.StateText, "en"),
        StateNumber=ua.UInt32(state.StateNumber or 0),
    )


def _decode_state(value: Any) -> isa95.ISA95StateDataType:
    text = value.StateText.Text if value.StateText is not None else None
    return isa95.ISA95StateDataType(StateText=text or "", StateNumber=value.StateNumber)


def _texts(text: str | None) -> list[ua.LocalizedText] | None:
    return [ua.LocalizedText(text, "en")] if text else None


def _text(texts: list[ua.LocalizedText] | None) -> str | None:
    return next((str(t.Text) for t in texts or [] if t.Text), None)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

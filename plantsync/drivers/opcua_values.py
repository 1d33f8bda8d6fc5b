"""What OPC UA values mean in JSON, and the metadata that says what a tag's numbers are.

    DataValue ─▶ reading(): to_json(value), quality(StatusCode), the source timestamp in UTC
    node ids  ─▶ read_metadata(): DataType, and the EngineeringUnits / EURange properties
                 (TranslateBrowsePaths, then Read, in batches within the server's limits)
              ─▶ load_data_type_definitions when a tag's type is the server's own structure

The JSON mapping is deterministic and documented in ``contracts/machine.py``: the same OPC UA
value always becomes the same JSON, structures as objects in the order of their definition.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import logging
import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.uaerrors import UaError

from plantsync.contracts.machine import Quality, Range, TagJson, TagMetadata
from plantsync.drivers.base import Reading
from plantsync.drivers.common.uaserver import ServerLimits

_logger = logging.getLogger(__name__)

_PROPERTIES = ("EngineeringUnits", "EURange")


def reading(
    machine_id: str,
    tag: str,
    data: ua.DataValue,
    *,
    historical: bool = False,
    overflow: bool = False,
) -> Reading:
    """One data change (or, ``historical``, one value from history) as a Reading;
    ``overflow``: the server flagged values of the tag lost before it."""
    status = data.StatusCode or ua.StatusCode()
    variant = data.Value
    return Reading(
        machine_id=machine_id,
        tag=tag,
        value=to_json(variant.Value if variant is not None else None),
        quality=quality(status.value),
        status_code=int(status.value),
        source_time=None if data.SourceTimestamp is None else as_utc(data.SourceTimestamp),
        historical=historical,
        overflow=overflow,
    )


def to_json(value: object) -> TagJson:
    """An OPC UA value as JSON (see the table in ``contracts/machine.py``)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return int(value.value) if isinstance(value.value, int) else str(value.value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, datetime):
        return as_utc(value).isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return _other(value)


def _other(value: object) -> TagJson:
    if isinstance(value, ua.NodeId):
        return value.to_string()
    if isinstance(value, ua.QualifiedName):
        return f"{value.NamespaceIndex}:{value.Name}"
    if isinstance(value, ua.StatusCode):
        return int(value.value)
    if isinstance(value, ua.Variant):
        return to_json(value.Value)
    if isinstance(value, ua.ExtensionObject):  # a structure no definition decoded
        body = base64.b64encode(value.Body or b"").decode("ascii")
        return {"type_id": value.TypeId.to_string(), "body": body}
    if isinstance(value, uuid.UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_json(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if field.init  # asyncua's optional-field mask (``Encoding``) is not a field's value
        }
    return str(value)


def quality(status_code: int) -> Quality:
    """The severity bits (30-31) of a StatusCode: 00 good, 01 uncertain, 1x bad."""
    severity = (status_code >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    return Quality.UNCERTAIN if severity == 1 else Quality.BAD


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # OPC UA DateTime is UTC on the wire
    return moment.astimezone(UTC)


async def read_metadata(
    client: Client, node_ids: Sequence[ua.NodeId], limits: ServerLimits
) -> list[TagMetadata | None]:
    """Data type, EngineeringUnits and EURange of each node (None where it has none of them);
    loads the server's structure definitions when a node's type is one of them."""
    session = client.uaclient.session
    size = limits.read_batch()
    paths = [_property_path(node_id, name) for node_id in node_ids for name in _PROPERTIES]
    targets: list[ua.NodeId | None] = []
    for start in range(0, len(paths), size):
        for result in await session.translate_browsepaths_to_nodeids(paths[start : start + size]):
            good = result.StatusCode.is_good() and result.Targets
            targets.append(result.Targets[0].TargetId if good else None)
    reads = (
        [(node_id, AttributeIds.DataType) for node_id in node_ids]
        + [(node_id, AttributeIds.AccessLevel) for node_id in node_ids]
        + [(target, AttributeIds.Value) for target in targets if target is not None]
    )
    values = iter(await _read(client, reads, size))
    data_types = [next(values) for _ in node_ids]
    access = [next(values) for _ in node_ids]
    properties = [next(values) if target is not None else None for target in targets]
    names = await _type_names(client, data_types, size)
    return [
        _metadata(
            names.get(data_type) if isinstance(data_type, ua.NodeId) else None,
            level if isinstance(level, int) else None,
            *pair,
        )
        for data_type, level, pair in zip(
            data_types,
            access,
            zip(properties[0::2], properties[1::2], strict=True),
            strict=True,
        )
    ]


def _metadata(
    data_type: str | None, access: int | None, units: object, eu_range: object
) -> TagMetadata | None:
    if units is None and eu_range is None and data_type is None and access is None:
        return None
    return TagMetadata(
        history=None if access is None else bool(access & ua.AccessLevel.HistoryRead.mask),
        data_type=data_type,
        units=units.DisplayName.Text if isinstance(units, ua.EUInformation) else None,
        unit_id=units.UnitId if isinstance(units, ua.EUInformation) else None,
        eu_range=(
            Range(low=eu_range.Low, high=eu_range.High) if isinstance(eu_range, ua.Range) else None
        ),
    )


def _property_path(node_id: ua.NodeId, name: str) -> ua.BrowsePath:
    return ua.BrowsePath(
        StartingNode=node_id,
        RelativePath=ua.RelativePath(
            Elements=[
                ua.RelativePathElement(
                    ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HasProperty)),
                    IsInverse=False,  # type: ignore[arg-type]
                    IncludeSubtypes=True,  # type: ignore[arg-type]
                    TargetName=ua.QualifiedName(name, 0),
                )
            ]
        ),
    )


async def _read(
    client: Client, reads: Sequence[tuple[ua.NodeId, AttributeIds]], size: int
) -> list[object]:
    out: list[object] = []
    for start in range(0, len(reads), size):
        params = ua.ReadParameters(
            NodesToRead=[
                ua.ReadValueId(NodeId=node_id, AttributeId=attribute)
                for node_id, attribute in reads[start : start + size]
            ]
        )
        for value in await client.uaclient.session.read(params):
            good = value.StatusCode is None or value.StatusCode.is_good()
            out.append(value.Value.Value if good and value.Value is not None else None)
    return out


async def _type_names(
    client: Client, data_types: Sequence[object], size: int
) -> dict[ua.NodeId, str]:
    """Standard types by their name in the spec; the server's own by their BrowseName, after
    loading their definitions so their values decode into structures."""
    names: dict[ua.NodeId, str] = {}
    own = sorted(
        {t for t in data_types if isinstance(t, ua.NodeId) and t.NamespaceIndex != 0},
        key=lambda node_id: node_id.to_string(),
    )
    for data_type in data_types:
        if isinstance(data_type, ua.NodeId) and data_type.NamespaceIndex == 0:
            identifier = data_type.Identifier
            known = ObjectIdNames.get(identifier) if isinstance(identifier, int) else None
            names[data_type] = known or data_type.to_string()
    if not own:
        return names
    read = await _read(client, [(t, AttributeIds.BrowseName) for t in own], size)
    for data_type, name in zip(own, read, strict=True):
        names[data_type] = (
            name.Name if isinstance(name, ua.QualifiedName) else data_type.to_string()
        )
    try:
        await client.load_data_type_definitions()
    except (UaError, ValueError, KeyError) as exc:
        # Values of these types then arrive as {"type_id", "body"}: readable, not decoded.
        _logger.warning("opcua: the server's data type definitions did not load: %r", exc)
    return names

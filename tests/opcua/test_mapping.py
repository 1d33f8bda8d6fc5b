"""How OPC UA values and status codes become plantsync readings (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from asyncua import ua

from plantsync.contracts.machine import Quality
from plantsync.drivers.opcua_values import quality
from plantsync.drivers.opcua_values import to_json as to_scalar


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (0x00000000, Quality.GOOD),  # Good
        (0x00A80000, Quality.GOOD),  # GoodOverload
        (0x40900000, Quality.UNCERTAIN),  # UncertainLastUsableValue
        (0x80340000, Quality.BAD),  # BadNodeIdUnknown
        (0x808A0000, Quality.BAD),  # BadWaitingForInitialData
        (0xC0000000, Quality.BAD),  # reserved severity 11 counts as bad
    ],
)
def test_the_severity_bits_of_a_status_code_decide_quality(
    status_code: int, expected: Quality
) -> None:
    assert quality(status_code) is expected


def test_plain_scalars_pass_through_unchanged() -> None:
    assert [to_scalar(value) for value in (True, 7, 2.5, "Executing", None)] == [
        True,
        7,
        2.5,
        "Executing",
        None,
    ]


def test_localized_text_becomes_its_text() -> None:
    assert to_scalar(ua.LocalizedText("Running", "en-US")) == "Running"


def test_an_enum_becomes_its_number() -> None:
    value = to_scalar(ua.ServerState.Suspended)
    assert (value, type(value)) == (3, int)  # ServerState: Running 0 … Suspended 3


def test_a_datetime_becomes_an_iso_string_in_utc() -> None:
    local = datetime(2025, 3, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert to_scalar(local) == "2025-03-01T11:00:00+00:00"
    assert to_scalar(datetime(2025, 3, 1, 12, 0)) == "2025-03-01T12:00:00+00:00"
    assert to_scalar(datetime(2025, 3, 1, tzinfo=UTC)) == "2025-03-01T00:00:00+00:00"


def test_arrays_become_json_arrays_element_by_element() -> None:
    assert to_scalar([1, 2]) == [1, 2]
    assert to_scalar([[1.5, 2.5], [3.0, 4.0]]) == [[1.5, 2.5], [3.0, 4.0]]
    assert to_scalar([ua.LocalizedText("a"), ua.LocalizedText("b", "de")]) == ["a", "b"]


def test_a_structure_becomes_an_object_in_the_order_of_its_definition() -> None:
    units = ua.EUInformation(
        NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
        UnitId=4408652,
        DisplayName=ua.LocalizedText("°C"),
        Description=ua.LocalizedText("degree Celsius"),
    )
    value = to_scalar(units)
    assert isinstance(value, dict)
    assert list(value) == ["NamespaceUri", "UnitId", "DisplayName", "Description"]
    assert value["DisplayName"] == "°C"
    assert to_scalar(ua.Range(Low=0.0, High=200.0)) == {"Low": 0.0, "High": 200.0}


def test_identifiers_bytes_and_undecodable_structures_have_one_string_form() -> None:
    assert to_scalar(ua.NodeId.from_string("ns=2;s=press-1.speed")) == "ns=2;s=press-1.speed"
    assert to_scalar(ua.QualifiedName("speed", 2)) == "2:speed"
    assert to_scalar(b"\x00\xff") == "AP8="
    raw = ua.ExtensionObject(TypeId=ua.NodeId.from_string("ns=3;i=5001"), Body=b"\x01\x02")  # type: ignore[arg-type]
    assert to_scalar(raw) == {"type_id": "ns=3;i=5001", "body": "AQI="}
    assert to_scalar(float("nan")) is None

"""How OPC UA values and status codes become plantsync readings (no server needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from asyncua import ua

from plantsync.contracts.machine import Quality
from plantsync.drivers.opcua import quality, to_scalar


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


def test_anything_else_becomes_its_string() -> None:
    assert to_scalar(ua.NodeId.from_string("ns=2;s=press-1.speed")) == str(
        ua.NodeId.from_string("ns=2;s=press-1.speed")
    )
    assert to_scalar([1, 2]) == "[1, 2]"

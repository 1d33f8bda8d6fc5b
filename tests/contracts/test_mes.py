"""The MES messages (contracts/mes.py): streams, topics, lanes and the checks on their payloads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from plantsync.contracts import Topics
from plantsync.contracts.mes import (
    MES_MESSAGES,
    EquipmentDowntime,
    EquipmentDowntimeMessage,
    ProductionThroughput,
    ProductionYield,
    WorkStatus,
)

TOPICS = Topics("plantsync/v1", "plant-01")
START, END = "2026-03-01T06:00:00Z", "2026-03-01T06:15:00Z"


def test_downtime_and_execution_status_are_business_and_counts_are_telemetry() -> None:
    lanes = {name: kind.business for name, kind in MES_MESSAGES.items()}

    assert lanes == {
        "work.status": True,
        "equipment.downtime": True,
        "equipment.capability": True,
        "production.throughput": False,
        "production.yield": False,
    }


def test_a_downtime_event_goes_to_its_equipment_stream_and_topic() -> None:
    kind = MES_MESSAGES["equipment.downtime"]
    downtime = EquipmentDowntime.model_validate(
        dict(
            downtime_id="DT-7",
            equipment_id="press-1",
            start=START,
            end=END,
            reason_code="MECH-01",
            category="unplanned",
        )
    )

    assert kind.stream(downtime) == "equipment/press-1/downtime"
    assert kind.topic(TOPICS, downtime) == "plantsync/v1/plant-01/up/mes/equipment/press-1/downtime"
    assert kind.event_time(downtime) == downtime.end


def test_a_work_order_status_goes_to_the_work_order_stream() -> None:
    kind = MES_MESSAGES["work.status"]
    status = WorkStatus.model_validate(
        dict(work_order_id="WO-1", state="Running", changed_at=START)
    )

    assert kind.stream(status) == "workorder/WO-1"
    assert kind.topic(TOPICS, status) == "plantsync/v1/plant-01/up/mes/workorder/WO-1/status"


def test_a_downtime_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValidationError, match="earlier than the start"):
        EquipmentDowntime.model_validate(
            dict(
                downtime_id="DT-7",
                equipment_id="press-1",
                start=END,
                end=START,
                reason_code="MECH-01",
                category="planned",
            )
        )


def test_yield_is_computed_from_the_counts_when_the_mes_gives_none() -> None:
    computed = ProductionYield.model_validate(
        dict(
            equipment_id="press-1",
            interval_start=START,
            interval_end=END,
            good_count=97,
            total_count=100,
        )
    )

    assert computed.yield_percent == 97.0
    with pytest.raises(ValidationError, match="good_count must not exceed"):
        ProductionYield.model_validate(
            dict(
                equipment_id="press-1",
                interval_start=START,
                interval_end=END,
                good_count=101,
                total_count=100,
            )
        )


def test_counts_are_never_negative() -> None:
    with pytest.raises(ValidationError):
        ProductionThroughput.model_validate(
            dict(equipment_id="press-1", interval_start=START, interval_end=END, good_count=-1)
        )


def test_the_envelope_of_a_downtime_message_carries_type_and_version() -> None:
    message = EquipmentDowntimeMessage.model_validate(
        dict(
            id="0193a1c2-0000-7000-8000-000000000000",
            site="plant-01",
            source="mes:downtime",
            stream="equipment/press-1/downtime",
            seq=1,
            event_time=START,
            payload=EquipmentDowntime.model_validate(
                dict(
                    downtime_id="DT-7",
                    equipment_id="press-1",
                    start=START,
                    reason_code="MECH-01",
                    category="planned",
                )
            ),
        )
    )

    wire = message.model_dump(mode="json")
    assert (wire["type"], wire["schema_version"]) == ("equipment.downtime", 1)
    assert wire["payload"]["end"] is None

"""One valid example of every message, as the JSON a producer puts on the wire."""

from __future__ import annotations

import copy
import json
from typing import Any

SITE = "plant-01"

ORDER: dict[str, Any] = {
    "order_id": "JO-4711",
    "revision": 1,
    "product_id": "PRD-100",
    "quantity": {"value": "1200.000", "unit": "kg"},
    "work_center": "line-1",
    "equipment_id": "press-1",
    "planned_start": "2026-11-25T06:00:00Z",
    "planned_end": "2026-11-25T14:00:00Z",
    "priority": 10,
    "request_state": "Released",
    "materials": [
        {"material_id": "RM-7", "quantity": {"value": "1250.5", "unit": "kg"}, "use": "Consumed"},
        {"material_id": "PRD-100", "quantity": {"value": "1200", "unit": "kg"}, "use": "Produced"},
    ],
    "segments": [
        {"process_segment_id": "mix", "equipment_id": "mixer-2", "duration": "PT2H"},
        {"process_segment_id": "press", "equipment_id": "press-1", "duration": "PT5H30M"},
    ],
}

PAYLOADS: dict[str, dict[str, Any]] = {
    "schedule.release": {"orders": [ORDER]},
    "schedule.revision": {"orders": [{**ORDER, "revision": 2, "priority": 5}]},
    "order.hold": {"order_id": "JO-4711", "revision": 3, "reason": "quality hold: lot QA-17"},
    "order.hold-release": {"order_id": "JO-4711", "revision": 4, "reason": "QA-17 cleared"},
    "order.material-substitution": {
        "order_id": "JO-4711",
        "revision": 5,
        "replaced_material_id": "RM-7",
        "substitute_material_id": "RM-7B",
        "quantity": {"value": "1250.5", "unit": "kg"},
        "reason": "RM-7 out of stock",
    },
    "order.cancel": {"order_id": "JO-4711", "revision": 6, "reason": "customer cancelled"},
    "schedule.snapshot": {"orders": [ORDER], "as_of_seq": 41},
    "alarm.ack": {
        "source": "opcua:line-1",
        "condition_id": "ns=2;s=alarm.overtemperature",
        "event_id": "3a5f0c",
        "comment": "seen, maintenance called",
        "user": "hq.shift-lead",
    },
}
"""Down payloads by type."""


def down_message(message_type: str, **overrides: Any) -> dict[str, Any]:
    """A valid down envelope of ``message_type``; ``overrides`` replace top-level keys."""
    message: dict[str, Any] = {
        "id": "0193a1c2-7c42-7000-8eb4-cb2acc6a4ece",
        "type": message_type,
        "schema_version": 1,
        "site": SITE,
        "source": "hq:planning",
        "stream": "alarm-acks" if message_type == "alarm.ack" else "schedule",
        "seq": 42,
        "event_time": "2026-11-24T17:30:00.000Z",
        "historical": False,
        "correlation_id": "plan-2026-48",
        "payload": copy.deepcopy(PAYLOADS[message_type]),
    }
    message.update(overrides)
    return message


def encoded(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()

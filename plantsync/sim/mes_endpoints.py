"""The ``[[mes_poll]]`` endpoints that read the simulated MES (``sim/mes.py``): one per MES
message type, each with its own cursor kind and mapping, as a plant's config would have them.
Used by the demo, the tests and the bench."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from plantsync.config.plant import PollEndpointConfig


def poll_endpoints(
    url: str, interval: timedelta = timedelta(seconds=2)
) -> list[PollEndpointConfig]:
    """The ``[[mes_poll]]`` endpoints that read this MES at ``url``: one per message type, each
    with its own cursor kind, as a plant's config would have them."""
    common: dict[str, Any] = {"interval": interval}
    return [
        PollEndpointConfig.model_validate(endpoint)
        for endpoint in (
            {
                **common,
                "name": "workorders",
                "url": f"{url}/api/v1/workorders",
                "query": {"limit": "50"},
                "cursor": {"kind": "last-id", "param": "after", "field": "/id"},
                "message": "work.status",
                "records": "/items",
                "more": "/has_more",
                "fields": {
                    "work_order_id": "/wo",
                    "operation_id": "/op",
                    "equipment_id": "/resource",
                    "state": "/status",
                    "good_count": "/qty_good",
                    "scrap_count": "/qty_scrap",
                    "changed_at": "/modified",
                },
                "values": {"state": {"RUN": "Running", "HOLD": "Interrupted", "DONE": "Ended"}},
            },
            {
                **common,
                "name": "downtime",
                "url": f"{url}/api/v1/downtime",
                "query": {"limit": "50"},
                "cursor": {"kind": "last-timestamp", "param": "since", "field": "/modified"},
                "message": "equipment.downtime",
                "records": "/data/events",
                "fields": {
                    "downtime_id": "/event_id",
                    "equipment_id": "/machine",
                    "start": "/from",
                    "end": "/to",
                    "reason_code": "/code",
                    "reason": "/text",
                    "category": "/planned",
                },
                "values": {"category": {"true": "planned", "false": "unplanned"}},
            },
            {
                **common,
                "name": "throughput",
                "url": f"{url}/api/v1/throughput",
                "query": {"page_size": "50"},
                "cursor": {"kind": "page-token", "param": "page_token", "next": "/next_page_token"},
                "message": "production.throughput",
                "records": "/records",
                "fields": {
                    "equipment_id": "/equipment",
                    "interval_start": "/start",
                    "interval_end": "/end",
                    "good_count": "/good",
                    "scrap_count": "/scrap",
                },
            },
            {
                **common,
                "name": "shift-report",
                "url": f"{url}/api/v1/shift-report",
                "message": "production.yield",
                "records": "/lines",
                "fields": {
                    "equipment_id": "/equipment",
                    "interval_start": "/shift_start",
                    "interval_end": "/shift_end",
                    "good_count": "/good",
                    "total_count": "/total",
                },
            },
            {
                **common,
                "name": "capacity",
                "url": f"{url}/api/v1/capacity",
                "message": "equipment.capability",
                "records": "/work_centers",
                "fields": {
                    "equipment_id": "/wc",
                    "shift_id": "/shift",
                    "shift_start": "/shift_start",
                    "shift_end": "/shift_end",
                    "available_hours": "/hours",
                    "planned_maintenance": "/maintenance",
                },
            },
        )
    ]

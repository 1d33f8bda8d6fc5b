"""The plant's schedule for plant applications, and the changes held for a planner.

    GET  /api/v1/schedule[?work_center=]             last-known-good schedule, from the store
    GET  /api/v1/orders/{order_id}                   one order, or 404
    GET  /api/v1/approvals                           changes held for a planner
    POST /api/v1/approvals/{row_id}/approve|reject   200, or 404 when nothing waits

The schedule is served from the store whether the hub is reachable or not: plants keep working
on it through an outage. A decision goes through the downlink, which acknowledges it to HQ.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, Field

from plantsync.web import commands
from plantsync.web.apiviews import (
    Decided,
    Schedule,
    ScheduledOrder,
    WaitingChange,
    order_view,
    schedule_view,
    waiting_view,
)
from plantsync.web.routes.common import REFUSED, UNREADABLE_BODY, RowId, RunningParts, Scrub

reads = APIRouter(prefix="/api/v1", responses=REFUSED)
writes = APIRouter(prefix="/api/v1", responses=REFUSED)


@reads.get("/schedule", tags=["schedule"])
async def schedule(
    parts: RunningParts,
    work_center: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Schedule:
    """The last-known-good schedule by work center, served from the store (hub or not)."""
    orders = await parts.store.inbox.schedule(work_center)
    return schedule_view(orders, parts.view.health["hub"])


@reads.get("/orders/{order_id}", tags=["schedule"], responses={404: {}})
async def order(
    parts: RunningParts, order_id: Annotated[str, Path(max_length=128)]
) -> ScheduledOrder:
    """One order of the last-known-good schedule."""
    found = await parts.store.inbox.order(order_id)
    if found is None:
        raise HTTPException(404, f"order {order_id!r} is not in the plant's schedule")
    return order_view(found)


@reads.get("/approvals", tags=["approvals"])
async def approvals(parts: RunningParts, scrub: Scrub) -> list[WaitingChange]:
    """Changes held for a planner's approval, oldest first, with the orders they propose."""
    rows = await parts.store.inbox.waiting_approval()
    site = parts.config.site.id
    return [await waiting_view(row, site, parts.store.inbox, scrub) for row in rows]


class Rejection(BaseModel):
    """Why a planner refuses a change; HQ receives it with the rejection."""

    reason: str = Field(min_length=1, max_length=500)


@writes.post("/approvals/{row_id}/approve", tags=["approvals"], responses={404: {}})
async def approve(parts: RunningParts, row_id: RowId) -> Decided:
    """Let a waiting change apply; the downlink applies it and acknowledges it to HQ."""
    return await commands.approve(parts, row_id)


@writes.post(
    "/approvals/{row_id}/reject", tags=["approvals"], responses={404: {}, **UNREADABLE_BODY}
)
async def reject(parts: RunningParts, row_id: RowId, body: Rejection) -> Decided:
    """Refuse a waiting change; HQ gets "rejected" (approval-rejected) with the reason."""
    return await commands.reject(parts, row_id, body.reason)

"""The schedule a page at a time, and one order's life, on the API.

    GET /api/v1/orders[?state=&work_center=&from=&to=&q=&page=&page_size=]   a page
    GET /api/v1/orders/{order_id}/timeline    every message of the order the store keeps, or 404

Read routes: ``create_app`` mounts them behind ``read_access`` like every other read. Both
read the store file read-only in a worker thread (``buffer.history``), beside the agent.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query

from plantsync.buffer.history.schedule import MAX_LIMIT
from plantsync.buffer.history.timeline import read_timeline
from plantsync.web.orders.paging import PAGE_SIZE, Filters, SchedulePageView, filters, schedule_page
from plantsync.web.orders.timeline import OrderTimelineView, timeline_view
from plantsync.web.routes.common import REFUSED, RunningParts, Scrub

reads = APIRouter(prefix="/api/v1", responses=REFUSED)

OrderId = Annotated[str, Path(min_length=1, max_length=128)]


@reads.get("/orders", tags=["schedule"])
async def orders(
    parts: RunningParts,
    wanted: Annotated[Filters, Depends(filters)],
    page_size: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = PAGE_SIZE,
) -> SchedulePageView:
    """One page of the last-known-good schedule, filtered by status (``state``), work
    center, planned start (``from`` inclusive, ``to`` exclusive, dates in UTC) and an order id
    fragment (``q``), in schedule order; with the counts per status and per work center."""
    return await schedule_page(parts.store.path, wanted, page_size)


@reads.get("/orders/{order_id}/timeline", tags=["schedule"], responses={404: {}})
async def timeline(parts: RunningParts, scrub: Scrub, order_id: OrderId) -> OrderTimelineView:
    """The order's life as the store keeps it: each schedule message received (with its
    revision, verdict and when it was settled), each ack sent, each status change and
    confirmation, oldest first. Settled inbox rows and the sent archive are kept for
    ``store.keep_processed`` and ``store.archive_max_age``: older events are gone."""
    found = await asyncio.to_thread(read_timeline, parts.store.path, order_id)
    if not found.known:
        raise HTTPException(404, f"the store holds nothing about order {order_id!r}")
    return timeline_view(found, scrub)

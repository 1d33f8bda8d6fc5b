"""A page of the schedule, filtered on the server, for the status page and the API.

    Filters (query parameters: state, work_center, from, to, q, page) ──▶ ScheduleQuery
    read_schedule_page (buffer, in a thread) ──▶ SchedulePageView

The page never holds the whole schedule: ``PAGE_SIZE`` orders per page, the filters and the
counts (per status, per work center) beside them. The store is read beside the agent's own
connection, in a worker thread, so a page read never waits on the writer's lock.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from plantsync.buffer.history.schedule import ScheduleQuery, read_schedule_page
from plantsync.web.apiviews import ScheduledOrder, order_view

PAGE_SIZE = 50


class Filters(BaseModel):
    """What the reader asked for; every field optional. ``page`` counts from 1."""

    state: str | None = None
    work_center: str | None = None
    starts_from: date | None = None
    starts_before: date | None = None
    q: str | None = None
    page: int = 1

    def query(self, limit: int = PAGE_SIZE) -> ScheduleQuery:
        return ScheduleQuery(
            status=self.state or None,
            work_center=self.work_center or None,
            starts_from=self.starts_from.isoformat() if self.starts_from else None,
            starts_before=self.starts_before.isoformat() if self.starts_before else None,
            order_id=self.q.strip() if self.q and self.q.strip() else None,
            offset=(self.page - 1) * limit,
            limit=limit,
        )

    def without_page(self) -> dict[str, str]:
        """The filters as query parameters (for links to other pages), empty ones left out."""
        values = {
            "state": self.state,
            "work_center": self.work_center,
            "from": self.starts_from.isoformat() if self.starts_from else None,
            "to": self.starts_before.isoformat() if self.starts_before else None,
            "q": self.q,
        }
        return {key: value for key, value in values.items() if value}


Text = Annotated[str | None, Query(max_length=128)]


def filters(
    state: Text = None,
    work_center: Text = None,
    starts_from: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    starts_before: Annotated[
        str | None, Query(alias="to", max_length=10, description="exclusive")
    ] = None,
    q: Annotated[str | None, Query(max_length=128, description="order id fragment")] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Filters:
    """The filters from a request's query string (a FastAPI dependency). An empty field is no
    filter: the page's form sends every field, filled or not."""
    return Filters(
        state=state or None,
        work_center=work_center or None,
        starts_from=_date("from", starts_from),
        starts_before=_date("to", starts_before),
        q=q or None,
        page=page,
    )


def _date(name: str, text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:  # answered like any other bad parameter (422, loc and msg)
        error = {"loc": ("query", name), "msg": "write a date as YYYY-MM-DD", "type": "date"}
        raise RequestValidationError([error]) from exc


class SchedulePageView(BaseModel):
    """One page of the last-known-good schedule and what the filters can choose from."""

    as_of: datetime
    page: int
    page_size: int
    matching: int
    """Orders matching the filters (all pages)."""
    total: int
    """Orders in the schedule."""
    statuses: dict[str, int]
    work_centers: dict[str, int]
    orders: list[ScheduledOrder]

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching // self.page_size))


async def schedule_page(path: Path, wanted: Filters, limit: int = PAGE_SIZE) -> SchedulePageView:
    """The page ``wanted`` asks for, from the store at ``path``."""
    found = await asyncio.to_thread(read_schedule_page, path, wanted.query(limit))
    return SchedulePageView(
        as_of=datetime.now().astimezone(),
        page=wanted.page,
        page_size=limit,
        matching=found.matching,
        total=found.total,
        statuses=found.statuses,
        work_centers=found.work_centers,
        orders=[order_view(order) for order in found.orders],
    )

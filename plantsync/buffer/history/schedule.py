"""One page of the last-known-good schedule, filtered on the server: the status page and
``GET /api/v1/orders`` show 10,000 orders a page at a time, never all at once.

    read_schedule_page(path, ScheduleQuery(...)) -> SchedulePage     read-only

A query filters by the order's plant-side status, its work center, a planned-start window
(dates or times in UTC, compared as the ISO 8601 text the orders table sorts by) and an
order id fragment (a case-insensitive substring), and returns ``limit`` orders from
``offset`` in the schedule's order (planned start, then order id; none last), the number that
match, and the statuses and work centers present (for the page's filters). Read-only beside
the running agent, as ``timeline.py`` is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plantsync.buffer.history.timeline import has_table
from plantsync.buffer.inbox import OrderState
from plantsync.buffer.inbox_sqlite import order_state
from plantsync.buffer.inspect import read_only

MAX_LIMIT = 500

# Literals only: every filter is a bound parameter that is NULL when not asked for.
_PAGE = (
    "SELECT order_id, revision, work_center, status, order_json, updated_at, planned_start,"
    " correlation_id, message_id FROM orders"
    " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR work_center = ?2)"
    " AND (?3 IS NULL OR planned_start >= ?3) AND (?4 IS NULL OR planned_start < ?4)"
    " AND (?5 IS NULL OR order_id LIKE ?5 ESCAPE '\\')"
    " ORDER BY planned_start IS NULL, planned_start, order_id LIMIT ?6 OFFSET ?7"
)
_COUNT = (
    "SELECT COUNT(*) FROM orders"
    " WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR work_center = ?2)"
    " AND (?3 IS NULL OR planned_start >= ?3) AND (?4 IS NULL OR planned_start < ?4)"
    " AND (?5 IS NULL OR order_id LIKE ?5 ESCAPE '\\')"
)
_STATUSES = "SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status"
_WORK_CENTERS = "SELECT work_center, COUNT(*) FROM orders GROUP BY work_center ORDER BY work_center"


@dataclass(frozen=True, slots=True)
class ScheduleQuery:
    """Which orders, which page; every filter None means "any"."""

    status: str | None = None
    work_center: str | None = None
    starts_from: str | None = None
    """ISO 8601 in UTC (a date is its midnight): planned start at or after it."""
    starts_before: str | None = None
    order_id: str | None = None
    """A fragment of the order id, matched anywhere in it, case-insensitively."""
    offset: int = 0
    limit: int = 50


@dataclass(frozen=True, slots=True)
class SchedulePage:
    orders: tuple[OrderState, ...]
    matching: int
    """Orders that match the filters, on every page."""
    total: int
    """Orders in the schedule."""
    statuses: dict[str, int]
    work_centers: dict[str, int]


def read_schedule_page(path: Path, query: ScheduleQuery) -> SchedulePage:
    """One page of the schedule at ``path``; see the module docstring.

    Raises ``StoreError`` when there is no file at ``path`` or it cannot be read."""
    params = (
        query.status,
        query.work_center,
        query.starts_from,
        query.starts_before,
        _like(query.order_id) if query.order_id else None,
    )
    limit = max(1, min(query.limit, MAX_LIMIT))
    with read_only(path) as connection:
        if not has_table(connection, "orders"):
            return SchedulePage((), 0, 0, {}, {})
        rows = connection.execute(_PAGE, (*params, limit, max(0, query.offset))).fetchall()
        (matching,) = connection.execute(_COUNT, params).fetchone()
        statuses = dict(connection.execute(_STATUSES).fetchall())
        work_centers = dict(connection.execute(_WORK_CENTERS).fetchall())
    return SchedulePage(
        tuple(order_state(row) for row in rows),
        int(matching),
        sum(statuses.values()),
        statuses,
        work_centers,
    )


def _like(fragment: str) -> str:
    """A LIKE pattern that finds ``fragment`` literally (``%`` and ``_`` in it are not wild)."""
    escaped = fragment.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"

"""What every API route module shares: the request's running parts and scrubber, the refusals
every /api/v1 operation documents, and the row id path parameter."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request
from pydantic import BaseModel

from plantsync.web.access import Scrubber, access_of
from plantsync.web.commands import Parts
from plantsync.web.view import AgentView


class ErrorDetail(BaseModel):
    """Why a request was refused, in one line."""

    detail: str


REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "no valid 'Authorization: Bearer <token>'"},
    403: {"model": ErrorDetail, "description": "not addressed as loopback, or no token set"},
    503: {"model": ErrorDetail, "description": "the store is not open (starting) or failed"},
}
"""Documented on every /api/v1 operation, so a client (and the schema checks) expects them."""
UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the body cannot be read (not UTF-8 JSON)"},
}

SQLITE_MAX_INTEGER = 2**63 - 1
"""Row ids are SQLite integers: a larger number in the path is no row (422), not a 500."""
RowId = Annotated[int, Path(ge=1, le=SQLITE_MAX_INTEGER)]


def view_of(request: Request) -> AgentView:
    """The agent ``create_app`` serves (kept on ``app.state.view``)."""
    view: AgentView = request.app.state.view
    return view


def _parts(request: Request) -> Parts:
    return Parts(view_of(request))


def _scrubber(request: Request) -> Scrubber:
    return access_of(request).scrub


RunningParts = Annotated[Parts, Depends(_parts)]
Scrub = Annotated[Scrubber, Depends(_scrubber)]

"""Bad input from the hub, kept with the reason it was refused, for plant IT to act on.

GET  /api/v1/dead-letters[?limit=]          newest first
POST /api/v1/dead-letters/{id}/retry        receive the bytes again, as from the hub
POST /api/v1/dead-letters/{id}/discard      delete for good
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from plantsync.web import commands
from plantsync.web.apiviews import DeadLetterView, RetryOutcome, dead_letter_view
from plantsync.web.routes.common import REFUSED, RowId, RunningParts, Scrub

reads = APIRouter(prefix="/api/v1", responses=REFUSED)
writes = APIRouter(prefix="/api/v1", responses=REFUSED)


@reads.get("/dead-letters", tags=["dead letters"])
async def dead_letters(
    parts: RunningParts, scrub: Scrub, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterView]:
    """Bad input from the hub, newest first."""
    letters = await parts.store.inbox.dead_letters(limit)
    return [dead_letter_view(letter, scrub) for letter in letters]


@writes.post("/dead-letters/{letter_id}/retry", tags=["dead letters"], responses={404: {}})
async def retry(parts: RunningParts, letter_id: RowId, scrub: Scrub) -> RetryOutcome:
    """Receive a dead letter's bytes again, as if the hub had just delivered them.

    The message is parsed again (``Downlink.receive``): after an upgrade or a config fix it
    enters the inbox and HQ gets "accepted"; still bad, it becomes a new dead letter and HQ
    gets the rejection again. Only then is the old dead letter discarded, so a crash in
    between keeps it (and a second retry is recognised as a duplicate by its message id).
    ``Inbox.retry_dead_letter`` is not used: it moves the bytes into the inbox unparsed.
    """
    return await commands.retry(parts, letter_id, scrub)


@writes.post("/dead-letters/{letter_id}/discard", tags=["dead letters"], responses={404: {}})
async def discard(parts: RunningParts, letter_id: RowId) -> dict[str, int]:
    """Delete a dead letter for good."""
    return await commands.discard(parts, letter_id)

"""What the API and the status page both do to the running agent: one implementation of each
command, so a planner's click on the page and a POST to the API take the same path.

    routes/schedule.py ──┐                        ┌─▶ approve / reject  (the downlink acks HQ)
    routes/deadletters ──┼─▶ Parts(view) ─────────┼─▶ retry: receive the bytes again
    statuspage.py ───────┘   503 while starting   └─▶ discard
"""

from __future__ import annotations

from typing import Literal

from fastapi import HTTPException

from plantsync.buffer.inbox import DeadLetter
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig
from plantsync.contracts.inbound import parse_down_message
from plantsync.errors import MessageRejected
from plantsync.web.apiviews import Decided, RetryOutcome, Scrub
from plantsync.web.view import AgentView, DownlinkCommands, PlantMessages


class Parts:
    """The running agent's parts a request works on; 503 while the store is not open yet."""

    def __init__(self, view: AgentView) -> None:
        store, downlink, business = view.store, view.downlink, view.business
        if store is None or downlink is None or business is None:
            raise HTTPException(503, "the agent is starting: its store is not open yet")
        self.view: AgentView = view
        self.config: AgentConfig = view.config
        self.store: Store = store
        self.downlink: DownlinkCommands = downlink
        self.business: PlantMessages = business


async def approve(parts: Parts, row_id: int) -> Decided:
    """Let a waiting change apply; 404 when nothing waits under ``row_id``."""
    if not await parts.downlink.approve(row_id):
        raise HTTPException(404, f"no change with row id {row_id} waits for approval")
    return Decided(row_id=row_id, decision="approved")


async def reject(parts: Parts, row_id: int, reason: str) -> Decided:
    """Refuse a waiting change for ``reason``; 404 when nothing waits under ``row_id``."""
    if not await parts.downlink.reject(row_id, reason):
        raise HTTPException(404, f"no change with row id {row_id} waits for approval")
    return Decided(row_id=row_id, decision="rejected")


async def retry(parts: Parts, letter_id: int, scrub: Scrub) -> RetryOutcome:
    """Receive a dead letter's bytes again; only then discard it (see the API route's doc).

    The parse here only names the outcome: ``Downlink.receive`` parses again and decides.
    """
    letter = await _find_dead_letter(parts.store, letter_id)
    if letter is None:
        raise HTTPException(404, f"no dead letter {letter_id}")
    if not letter.whole:
        raise HTTPException(
            409,
            f"dead letter {letter_id} keeps only the first {len(letter.payload)} of the"
            f" message's {letter.size} bytes: it cannot be received again; HQ must send it",
        )
    outcome: Literal["received", "dead-letter"] = "received"
    reason = None
    try:
        parse_down_message(
            letter.payload,
            site=parts.config.site.id,
            max_bytes=int(parts.config.schedule.max_message_size),
        )
    except MessageRejected as rejected:
        outcome, reason = "dead-letter", scrub(str(rejected))
    await parts.downlink.receive(letter.topic, letter.payload)
    await parts.store.inbox.discard_dead_letter(letter.id)
    return RetryOutcome(dead_letter_id=letter.id, outcome=outcome, reason=reason)


async def discard(parts: Parts, letter_id: int) -> dict[str, int]:
    """Delete a dead letter for good; 404 when there is none with ``letter_id``."""
    if not await parts.store.inbox.discard_dead_letter(letter_id):
        raise HTTPException(404, f"no dead letter {letter_id}")
    return {"discarded": letter_id}


async def _find_dead_letter(store: Store, letter_id: int) -> DeadLetter | None:
    # The inbox reads dead letters newest first, not by id; there are few, and this is rare.
    letters = await store.inbox.dead_letters(await store.inbox.dead_letter_count())
    return next((letter for letter in letters if letter.id == letter_id), None)

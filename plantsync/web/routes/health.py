"""Is the agent alive, ready, and how is it doing: the probes and the status document.

GET /healthz        the process answers: 200 always (open, no data)
GET /readyz         200 or 503 with the reason (open, no data)
GET /api/v1/status  links, outbox, inbox, store, dead letters, version, uptime
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from plantsync.agent.supervisor import LinkState
from plantsync.buffer.store import Store
from plantsync.errors import StoreError
from plantsync.web.apiviews import Status, downlink_counts, status_view
from plantsync.web.routes.common import REFUSED, RunningParts, Scrub, view_of

probes = APIRouter(tags=["probes"])
reads = APIRouter(prefix="/api/v1", responses=REFUSED)


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers: 200 always."""
    return {"status": "alive"}


READY_OUTBOX_FRACTION = 0.8
"""Without the hub the agent is ready while its outbox is below this share of its size cap."""


@probes.get("/readyz", responses={503: {"description": "store not open, or buffering too much"}})
async def readyz(request: Request) -> JSONResponse:
    """200 while the config is loaded, the store answers and the hub is up or the outbox is
    below 80 % of its cap; 503 otherwise (starting, stopping, store failed, buffering full)."""
    view = view_of(request)
    store = view.store
    if store is None or not await _store_answers(store):
        return JSONResponse({"status": "not ready", "reason": "store not open"}, status_code=503)
    if store.health.disk_full:
        reason = "the disk under the store is full: business messages are refused"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    stats = await store.outbox.stats()
    limit = READY_OUTBOX_FRACTION * stats.max_size_bytes
    if view.health["hub"].state is not LinkState.UP and stats.size_bytes >= limit:
        reason = "hub not reachable and the outbox is above 80% of its size cap"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _store_answers(store: Store) -> bool:
    try:
        await store.inbox.dead_letter_count()
    except StoreError:
        return False
    return True


@reads.get("/status", tags=["status"])
async def status(parts: RunningParts, scrub: Scrub) -> Status:
    """Links, outbox and inbox, dead letters, version, config hash, uptime."""
    return status_view(
        parts.view,
        await parts.store.outbox.stats(),
        await parts.store.inbox.inbox_stats(),
        downlink_counts(parts.downlink),
        scrub,
    )

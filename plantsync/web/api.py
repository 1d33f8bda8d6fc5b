"""The agent's local HTTP API: the schedule for plant applications, confirmations from the MES,
approvals for planners, dead letters and status for plant IT; the status page and /metrics.

    GET  /healthz  /readyz                          probes: open, no data
    GET  /api/v1/schedule[?work_center=]            last-known-good schedule, from the store
    GET  /api/v1/orders/{order_id}                  one order, or 404
    GET  /api/v1/orders?state=&work_center=&from=&to=&q=&page=   one page (``orders/routes.py``)
    GET  /api/v1/orders/{order_id}/timeline         the order's life from the store, or 404
    POST /api/v1/confirmations  /api/v1/order-status   committed to the outbox, then 202
    GET  /api/v1/approvals                          changes held for a planner
    POST /api/v1/approvals/{row_id}/approve|reject  200, or 404 when nothing waits
    GET  /api/v1/dead-letters                       bad input, newest first
    POST /api/v1/dead-letters/{id}/retry|discard
    GET  /api/v1/status   /openapi.json
    GET  /metrics                                   Prometheus text format (``routes/metrics.py``)
    GET  /  /status/…                               the status page (``statuspage.py``)

    create_app(view) ──▶ routes/health.py       probes (open), status        ┐ read_access
                    ├─▶ routes/schedule.py     schedule, orders, approvals  │ or
                    ├─▶ routes/plant.py        confirmations, order status  │ write_access
                    ├─▶ routes/deadletters.py  dead letters                 ┘ (access.py)
                    ├─▶ metrics.py, statuspage.py
                    └─▶ lifespan: the depth history's sampler (depth.py)

What a request may cost is ``limits.py``'s (413/414/415/431, and the access rule, before the
body is read). Who may call what is ``access.py``'s rule: reads open on loopback (Host
checked), else the token; every POST needs the token. The app works on an ``AgentView``
(``view.py``), never on the agent itself. Swagger UI and ReDoc are off (they load from a CDN;
plants are often air-gapped).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from plantsync import __version__
from plantsync.errors import StoreDiskFull, StoreError, StoreFull
from plantsync.web import statuspage
from plantsync.web.access import Access, read_access, write_access
from plantsync.web.depth import DepthHistory, sampling
from plantsync.web.limits import RequestLimits
from plantsync.web.metrics import AgentMetrics
from plantsync.web.orders import routes as orders
from plantsync.web.routes import deadletters, health, plant, schedule
from plantsync.web.routes.common import view_of
from plantsync.web.routes.metrics import router as metrics_router
from plantsync.web.view import AgentView

RETRY_AFTER_SECONDS = 30
"""What a producer refused with 503 (the outbox is full of business messages) is told."""


def create_app(view: AgentView, metrics: AgentMetrics | None = None) -> FastAPI:
    """The API, the status page and /metrics over ``view`` (its store is open while it runs).

    ``metrics`` is the registry the agent reports its service levels to (the composition root
    gives the agent the same object as its ``Observer``); a fresh one when not given.

    The app's lifespan samples the outbox depth for the page's chart; ``ApiServer`` runs it
    while it serves (an in-process test client without it shows the current depth only)."""
    history = DepthHistory()
    app = FastAPI(
        title="plantsync agent",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the read access rule
        lifespan=sampling(view, history),
    )
    access = Access(view.config)
    app.state.view, app.state.access = view, access
    app.state.metrics = metrics = metrics or AgentMetrics()
    metrics.watch(view)
    app.include_router(health.probes)
    for reads in (schedule.reads, deadletters.reads, health.reads, orders.reads):
        app.include_router(reads, dependencies=[Depends(read_access)])
    for writes in (plant.writes, schedule.writes, deadletters.writes):
        app.include_router(writes, dependencies=[Depends(write_access)])
    app.include_router(metrics_router, dependencies=[Depends(read_access)])
    app.include_router(statuspage.router(view, access, history))
    app.add_middleware(RequestLimits, config=view.config.api, access=access)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreFull, _store_full)
    app.add_exception_handler(StoreDiskFull, _disk_full)
    app.add_exception_handler(StoreError, _store_unavailable)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(read_access)])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    return app


# ---- errors ------------------------------------------------------------------------------------


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad key and why, without FastAPI's echo of the input: a body may hold
    what should not travel back (a mistyped secret), and the sender has it anyway."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
    return JSONResponse({"detail": detail}, status_code=422)


async def _store_full(request: Request, exc: Exception) -> JSONResponse:
    detail = (
        "the outbox is full of business messages waiting for the hub; nothing was stored:"
        " send it again later"
    )
    return JSONResponse(
        {"detail": detail},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _disk_full(request: Request, exc: Exception) -> JSONResponse:
    """507 Insufficient Storage: nothing was stored, and only freed disk space helps; the
    producer keeps the message and sends it again (the same producer-side contract as 503)."""
    directory = view_of(request).config.store.path.parent
    detail = (
        f"the disk under the agent's store ({directory}) is full; nothing was stored:"
        " send it again later (plant IT must free space; the agent resumes by itself)"
    )
    return JSONResponse(
        {"detail": detail, "reason": "disk-full"},
        status_code=507,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def _store_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "the agent's store is not available"}, status_code=503)

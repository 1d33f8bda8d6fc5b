"""The agent's local HTTP API: the schedule for plant applications, confirmations from the MES,
approvals for planners, dead letters and status for plant IT.

    GET  /healthz  /readyz                          probes: open, no data
    GET  /api/v1/schedule[?work_center=]            last-known-good schedule, from the store
    GET  /api/v1/orders/{order_id}                  one order, or 404
    POST /api/v1/confirmations  /api/v1/order-status   committed to the outbox, then 202
    GET  /api/v1/approvals                          changes held for a planner
    POST /api/v1/approvals/{row_id}/approve|reject  200, or 404 when nothing waits
    GET  /api/v1/dead-letters                       bad input, newest first
    POST /api/v1/dead-letters/{id}/retry|discard
    GET  /api/v1/status   /openapi.json
    GET  /metrics                                   Prometheus text format (``metrics.py``)

Access: reads are open while the API is bound to loopback (then the Host header must name
loopback too, so a web page cannot read the schedule through DNS rebinding); on any other
address every request but the probes needs ``Authorization: Bearer <api.token>``. Every POST
needs the token always, the MES's confirmations included: they become messages HQ trusts.
Without a token configured, POSTs are refused with 403. No answer carries a secret: there is
no config dump, and free text from links and peers is scrubbed of every configured secret.

Swagger UI and ReDoc are off (they load from a CDN; plants are often air-gapped).
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr

from plantsync import __version__
from plantsync.agent.business import BusinessWriter
from plantsync.agent.downlink import Downlink
from plantsync.agent.logs import correlation
from plantsync.agent.supervisor import LinkState
from plantsync.buffer.inbox import DeadLetter
from plantsync.buffer.store import Store
from plantsync.config.model import AgentConfig, is_loopback
from plantsync.contracts.inbound import parse_down_message
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.errors import MessageRejected, StoreDiskFull, StoreError, StoreFull
from plantsync.web import statuspage
from plantsync.web.apiviews import (
    Accepted,
    DeadLetterView,
    Decided,
    RetryOutcome,
    Schedule,
    ScheduledOrder,
    Status,
    WaitingChange,
    dead_letter_view,
    order_view,
    schedule_view,
    status_view,
    waiting_view,
)
from plantsync.web.metrics import AgentMetrics
from plantsync.web.metrics import router as metrics_router

if TYPE_CHECKING:
    from plantsync.agent.service import Agent

log = logging.getLogger(__name__)

API_SOURCE = "mes-api"
"""The ``source`` of messages the MES posts here."""

RETRY_AFTER_SECONDS = 30
"""What a producer refused with 503 (the outbox is full of business messages) is told."""

WRITES_REFUSED = (
    "state-changing calls are refused: no API token is configured;"
    " set api.token (better: PLANTSYNC_API__TOKEN) and send 'Authorization: Bearer <token>'"
)

_BEARER = HTTPBearer(auto_error=False, description="api.token from the agent's config")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def create_app(agent: Agent, metrics: AgentMetrics | None = None) -> FastAPI:
    """The API over ``agent``'s store, downlink and business writer (set while it runs);
    ``metrics`` is the registry the agent reports its service levels to."""
    app = FastAPI(
        title="plantsync agent",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served below, behind the read access rule
    )
    app.state.agent = agent
    observer = agent.parts.observer
    app.state.metrics = metrics or (
        observer if isinstance(observer, AgentMetrics) else AgentMetrics()
    )
    app.state.metrics.watch(agent)
    app.state.access = _Access(agent.config)
    app.include_router(_probes)
    app.include_router(_reads, dependencies=[Depends(_read_access)])
    app.include_router(_writes, dependencies=[Depends(_write_access)])
    app.include_router(metrics_router, dependencies=[Depends(_read_access)])
    app.include_router(statuspage.router(agent))
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StoreFull, _store_full)
    app.add_exception_handler(StoreDiskFull, _disk_full)
    app.add_exception_handler(StoreError, _store_unavailable)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(_read_access)])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    return app


# ---- access ---------------------------------------------------------------------------------


class _Access:
    """Who may call what; see the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        token = config.api.token
        self._token = token.get_secret_value().encode() if token is not None else None
        self._loopback = is_loopback(config.api.host)
        self.scrub = _Scrubber(config)

    def read(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._loopback:
            self._from_this_machine(request)
        else:
            self._authenticated(credentials)

    def write(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._token is None:
            raise HTTPException(403, WRITES_REFUSED)
        if self._loopback:
            self._from_this_machine(request)
        self._authenticated(credentials)

    def _authenticated(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if self._token is None or not hmac.compare_digest(given, self._token):
            raise HTTPException(
                401,
                "a valid 'Authorization: Bearer <token>' is required",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @staticmethod
    def _from_this_machine(request: Request) -> None:
        if not is_loopback(request.url.hostname or ""):
            raise HTTPException(403, "this API is bound to loopback: address it as 127.0.0.1")


class _Scrubber:
    """Replaces every configured secret in free text (link errors, peers' reasons)."""

    def __init__(self, config: AgentConfig) -> None:
        secrets = {secret.get_secret_value() for secret in _secrets(config.model_dump())}
        self._secrets = sorted(filter(None, secrets), key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text


def _secrets(value: object) -> list[SecretStr]:
    if isinstance(value, SecretStr):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _secrets(item)]
    if isinstance(value, list):
        return [s for item in value for s in _secrets(item)]
    return []


def _read_access(request: Request, credentials: Bearer) -> None:
    _access(request).read(request, credentials)


def _write_access(request: Request, credentials: Bearer) -> None:
    _access(request).write(request, credentials)


def _access(request: Request) -> _Access:
    access: _Access = request.app.state.access
    return access


# ---- the running agent's parts --------------------------------------------------------------


class _Parts:
    def __init__(self, agent: Agent, metrics: AgentMetrics) -> None:
        if agent.store is None or agent.downlink is None or agent.business is None:
            raise HTTPException(503, "the agent is starting: its store is not open yet")
        self.agent, self.config, self.metrics = agent, agent.config, metrics
        self.store: Store = agent.store
        self.downlink: Downlink = agent.downlink
        self.business: BusinessWriter = agent.business


def _parts(request: Request) -> _Parts:
    return _Parts(request.app.state.agent, request.app.state.metrics)


def _scrubber(request: Request) -> _Scrubber:
    return _access(request).scrub


Parts = Annotated[_Parts, Depends(_parts)]
Scrub = Annotated[_Scrubber, Depends(_scrubber)]


# ---- probes -----------------------------------------------------------------------------------

_probes = APIRouter(tags=["probes"])


@_probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers: 200 always."""
    return {"status": "alive"}


READY_OUTBOX_FRACTION = 0.8
"""Without the hub the agent is ready while its outbox is below this share of its size cap."""


@_probes.get("/readyz", responses={503: {"description": "store not open, or buffering too much"}})
async def readyz(request: Request) -> JSONResponse:
    """200 while the config is loaded, the store answers and the hub is up or the outbox is
    below 80 % of its cap; 503 otherwise (starting, stopping, store failed, buffering full)."""
    agent = request.app.state.agent
    if not await _store_answers(agent.store):
        return JSONResponse({"status": "not ready", "reason": "store not open"}, status_code=503)
    if agent.store.health.disk_full:
        reason = "the disk under the store is full: business messages are refused"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    stats = await agent.store.outbox.stats()
    limit = READY_OUTBOX_FRACTION * stats.max_size_bytes
    if agent.health["hub"].state is not LinkState.UP and stats.size_bytes >= limit:
        reason = "hub not reachable and the outbox is above 80% of its size cap"
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _store_answers(store: Store | None) -> bool:
    if store is None:
        return False
    try:
        await store.inbox.dead_letter_count()
    except StoreError:
        return False
    return True


# ---- answers every data endpoint may give ----------------------------------------------------


class ErrorDetail(BaseModel):
    """Why a request was refused, in one line."""

    detail: str


_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "no valid 'Authorization: Bearer <token>'"},
    403: {"model": ErrorDetail, "description": "not addressed as loopback, or no token set"},
    503: {"model": ErrorDetail, "description": "the store is not open (starting) or failed"},
}
"""Documented on every /api/v1 operation, so a client (and the schema checks) expects them."""
_UNREADABLE_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the body cannot be read (not UTF-8 JSON)"},
}


# ---- reads -------------------------------------------------------------------------------------

_reads = APIRouter(prefix="/api/v1", responses=_REFUSED)


@_reads.get("/schedule", tags=["schedule"])
async def schedule(
    parts: Parts,
    work_center: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Schedule:
    """The last-known-good schedule by work center, served from the store (hub or not)."""
    orders = await parts.store.inbox.schedule(work_center)
    return schedule_view(orders, parts.agent.health["hub"])


@_reads.get("/orders/{order_id}", tags=["schedule"], responses={404: {}})
async def order(parts: Parts, order_id: Annotated[str, Path(max_length=128)]) -> ScheduledOrder:
    """One order of the last-known-good schedule."""
    found = await parts.store.inbox.order(order_id)
    if found is None:
        raise HTTPException(404, f"order {order_id!r} is not in the plant's schedule")
    return order_view(found)


@_reads.get("/approvals", tags=["approvals"])
async def approvals(parts: Parts, scrub: Scrub) -> list[WaitingChange]:
    """Changes held for a planner's approval, oldest first, with the orders they propose."""
    rows = await parts.store.inbox.waiting_approval()
    site = parts.config.site.id
    return [await waiting_view(row, site, parts.store.inbox, scrub) for row in rows]


@_reads.get("/dead-letters", tags=["dead letters"])
async def dead_letters(
    parts: Parts, scrub: Scrub, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterView]:
    """Bad input from the hub, newest first."""
    letters = await parts.store.inbox.dead_letters(limit)
    return [dead_letter_view(letter, scrub) for letter in letters]


@_reads.get("/status", tags=["status"])
async def status(parts: Parts, scrub: Scrub) -> Status:
    """Links, outbox and inbox, dead letters, version, config hash, uptime."""
    return status_view(
        parts.agent,
        await parts.store.outbox.stats(),
        await parts.store.inbox.inbox_stats(),
        asdict(parts.downlink.counters),
        scrub,
    )


# ---- writes ------------------------------------------------------------------------------------

_writes = APIRouter(prefix="/api/v1", responses=_REFUSED)
_COMMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_UNREADABLE_BODY,
    422: {"description": "invalid input, or an order id that cannot be a topic level"},
    503: {"description": "the outbox is full of business messages: retry after Retry-After"},
    507: {"description": "the disk under the store is full: retry after Retry-After"},
}


@_writes.post("/confirmations", status_code=202, tags=["plant"], responses=_COMMIT_ERRORS)
async def confirmation(
    parts: Parts,
    body: ProductionConfirmation,
    correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id", max_length=128)] = None,
) -> Accepted:
    """A production confirmation from the MES; 202 once it is committed to the outbox. It
    carries the correlation id of the schedule that applied its order (else X-Correlation-Id)."""
    correlation_id = await parts.store.inbox.correlation_of(body.order_id) or correlation_id
    with correlation(correlation_id):
        try:
            message_id = await parts.business.confirmation(
                body, source=API_SOURCE, correlation_id=correlation_id
            )
        except ValueError as exc:  # e.g. an order id that cannot be a topic level
            raise HTTPException(422, str(exc)[:300]) from exc
        parts.metrics.confirmed(final=body.final)
        log.info("confirmation %s for order %s committed", message_id, body.order_id)
    return Accepted(message_id=message_id)


@_writes.post("/order-status", status_code=202, tags=["plant"], responses=_COMMIT_ERRORS)
async def order_status(parts: Parts, body: OrderStatus) -> Accepted:
    """A job order's state changed at the plant; 202 once it is committed to the outbox."""
    try:
        message_id = await parts.business.order_status(body, source=API_SOURCE)
    except ValueError as exc:
        raise HTTPException(422, str(exc)[:300]) from exc
    return Accepted(message_id=message_id)


class Rejection(BaseModel):
    """Why a planner refuses a change; HQ receives it with the rejection."""

    reason: str = Field(min_length=1, max_length=500)


SQLITE_MAX_INTEGER = 2**63 - 1
"""Row ids are SQLite integers: a larger number in the path is no row (422), not a 500."""
RowId = Annotated[int, Path(ge=1, le=SQLITE_MAX_INTEGER)]


@_writes.post("/approvals/{row_id}/approve", tags=["approvals"], responses={404: {}})
async def approve(parts: Parts, row_id: RowId) -> Decided:
    """Let a waiting change apply; the downlink applies it and acknowledges it to HQ."""
    if not await parts.downlink.approve(row_id):
        raise HTTPException(404, f"no change with row id {row_id} waits for approval")
    return Decided(row_id=row_id, decision="approved")


@_writes.post(
    "/approvals/{row_id}/reject", tags=["approvals"], responses={404: {}, **_UNREADABLE_BODY}
)
async def reject(parts: Parts, row_id: RowId, body: Rejection) -> Decided:
    """Refuse a waiting change; HQ gets "rejected" (approval-rejected) with the reason."""
    if not await parts.downlink.reject(row_id, body.reason):
        raise HTTPException(404, f"no change with row id {row_id} waits for approval")
    return Decided(row_id=row_id, decision="rejected")


@_writes.post("/dead-letters/{letter_id}/retry", tags=["dead letters"], responses={404: {}})
async def retry(parts: Parts, letter_id: RowId, scrub: Scrub) -> RetryOutcome:
    """Receive a dead letter's bytes again, as if the hub had just delivered them.

    The message is parsed again (``Downlink.receive``): after an upgrade or a config fix it
    enters the inbox and HQ gets "accepted"; still bad, it becomes a new dead letter and HQ
    gets the rejection again. Only then is the old dead letter discarded, so a crash in
    between keeps it (and a second retry is recognised as a duplicate by its message id).
    ``Inbox.retry_dead_letter`` is not used: it moves the bytes into the inbox unparsed.
    """
    letter = await _find_dead_letter(parts.store, letter_id)
    if letter is None:
        raise HTTPException(404, f"no dead letter {letter_id}")
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


@_writes.post("/dead-letters/{letter_id}/discard", tags=["dead letters"], responses={404: {}})
async def discard(parts: Parts, letter_id: RowId) -> dict[str, int]:
    """Delete a dead letter for good."""
    if not await parts.store.inbox.discard_dead_letter(letter_id):
        raise HTTPException(404, f"no dead letter {letter_id}")
    return {"discarded": letter_id}


async def _find_dead_letter(store: Store, letter_id: int) -> DeadLetter | None:
    # The inbox reads dead letters newest first, not by id; there are few, and this is rare.
    letters = await store.inbox.dead_letters(await store.inbox.dead_letter_count())
    return next((letter for letter in letters if letter.id == letter_id), None)


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
    agent = request.app.state.agent
    directory = agent.config.store.path.parent
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

"""The plant IT status page: one server-rendered HTML page on the agent's local API.

    GET  /                                       the page (every section rendered on the server)
    GET  /status/static/status.css|status.js     its only assets, served by the agent itself
    GET  /status/fragment                        JSON: the sections that changed, polled every 2 s
                                                 (ETag: a tag per section; If-None-Match: 304)
    GET  /status/orders/{order_id}               one order's timeline (``web/orders``)
    GET  /favicon.ico                            the page's icon
    POST /status/login  /status/logout           the session cookie (token entered once)
    POST /status/approvals/{row_id}/approve|reject
    POST /status/dead-letters/{id}/retry|discard

Air-gapped by construction: no URL in the page names a host; the chart is inline SVG; a
Content-Security-Policy limits scripts, styles and connections to the agent itself.

Access, as for the API (``plantsync.web.access``): with the API bound to loopback the page and
its fragment are open, and the Host header must name loopback (no DNS rebinding); bound to any
other address they need the session cookie or ``Authorization: Bearer <api.token>``.

Actions (approve, reject, retry, discard) need, always:

* the token: the plant IT person types it once into the page's login form, which POSTs it
  (as JSON) to ``/status/login``; the agent checks it and answers with a session cookie,
  ``HttpOnly; SameSite=Strict; Path=/``, whose value is an HMAC of the token under a key
  drawn at start, so the token itself is never stored in the browser, never rendered, and a
  restart ends every session. ``Authorization: Bearer <api.token>`` is accepted instead.
* a CSRF token (synchronizer): drawn at start, rendered in the page's
  ``<meta name="csrf-token">``, sent back by the page's script as ``X-CSRF-Token``. Another
  origin can neither read it (same-origin policy; Host check against rebinding) nor send the
  strict cookie, and the custom header forces a CORS preflight the agent never grants.

Without a configured token every action is refused with 403, as in the API. No answer carries
a secret: free text from links and peers passes through the API's scrubber.

    statuspage.py    routes, the guard, the data read through the API's views (``apiviews``)
    statusrender.py  the HTML, from those views
    depth.py         the outbox depth history behind the chart
    commands.py      approve, reject, retry, discard: the same code the API runs
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from plantsync.buffer.history.timeline import read_timeline
from plantsync.web import commands, statusrender
from plantsync.web.access import WRITES_REFUSED, Access, from_this_machine
from plantsync.web.apiviews import (
    Scrub,
    dead_letter_view,
    downlink_counts,
    status_view,
    waiting_view,
)
from plantsync.web.depth import DepthHistory, DepthSample
from plantsync.web.orders import render
from plantsync.web.orders.paging import Filters, filters, schedule_page
from plantsync.web.orders.timeline import timeline_view
from plantsync.web.view import AgentView

SESSION_COOKIE = "plantsync_session"
CSRF_HEADER = "X-CSRF-Token"
DEAD_LETTERS_SHOWN = 10
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_ASSETS = {
    "status.css": "text/css; charset=utf-8",
    "status.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


# ---- access -------------------------------------------------------------------------------------


class PageGuard:
    """The API's rule (``Access``) plus the page's session cookie and CSRF token."""

    def __init__(self, access: Access) -> None:
        self._access = access
        self._key = secrets.token_bytes(32)
        self.csrf = secrets.token_urlsafe(32)

    @property
    def token_configured(self) -> bool:
        return self._access.token_configured

    def session_value(self) -> str:
        """The cookie's value: an HMAC of the token under a key drawn at start."""
        return self._access.token_mac(self._key)

    def token_ok(self, given: str) -> bool:
        return self._access.token_ok(given)

    def authenticated(self, request: Request) -> bool:
        if not self.token_configured:
            return False
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and hmac.compare_digest(cookie, self.session_value()):
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(given.strip())

    def may_read(self, request: Request) -> bool:
        if self._access.loopback:
            from_this_machine(request)
            return True
        return self.authenticated(request)

    def write(self, request: Request) -> None:
        if not self.token_configured:
            raise HTTPException(403, WRITES_REFUSED)
        if self._access.loopback:
            from_this_machine(request)
        self.check_csrf(request)
        if not self.authenticated(request):
            raise HTTPException(401, "log in with the API token first")

    def check_csrf(self, request: Request) -> None:
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""), self.csrf):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page")


# ---- the router ---------------------------------------------------------------------------


class Login(BaseModel):
    token: str = Field(min_length=1, max_length=1024)


class Reason(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


RowId = Annotated[int, Path(ge=1)]


def router(view: AgentView, access: Access, history: DepthHistory) -> APIRouter:
    """The page's routes over ``view``; ``create_app`` includes it."""
    guard = PageGuard(access)
    assets = {
        name: (resources.files("plantsync.web") / "static" / name).read_bytes() for name in _ASSETS
    }
    routes = APIRouter(include_in_schema=False)
    site = view.config.site.id

    @routes.get("/")
    async def page(request: Request, wanted: Annotated[Filters, Depends(filters)]) -> Response:
        if not guard.may_read(request):
            login = statusrender.login_form(
                token_configured=guard.token_configured, logged_in=False
            )
            locked = statusrender.page(csrf=guard.csrf, site=site, login=login, sections=None)
            return _html(locked, status=401)
        sections = await _sections(view, access.scrub, history, wanted)
        login = statusrender.login_form(
            token_configured=guard.token_configured, logged_in=guard.authenticated(request)
        )
        document = statusrender.page(
            csrf=guard.csrf, site=site, login=login, sections=sections, etag=sections_etag(sections)
        )
        return _html(document)

    @routes.get("/status/static/{name}")
    async def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, "no such asset")
        return Response(
            assets[name],
            media_type=_ASSETS[name],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    @routes.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(
            assets["favicon.svg"],
            media_type=_ASSETS["favicon.svg"],
            headers={"Cache-Control": "max-age=86400"},
        )

    @routes.get("/status/fragment")
    async def fragment(request: Request, wanted: Annotated[Filters, Depends(filters)]) -> Response:
        if not guard.may_read(request):
            raise HTTPException(401, "log in with the API token first")
        sections = await _sections(view, access.scrub, history, wanted)
        return changed_sections(
            sections, guard.authenticated(request), request.headers.get("if-none-match", "")
        )

    @routes.get("/status/orders/{order_id}")
    async def order(request: Request, order_id: Annotated[str, Path(max_length=128)]) -> Response:
        if not guard.may_read(request):
            login = statusrender.login_form(
                token_configured=guard.token_configured, logged_in=False
            )
            locked = statusrender.page(csrf=guard.csrf, site=site, login=login, sections=None)
            return _html(locked, status=401)
        store = view.store
        if store is None:
            raise HTTPException(503, "the agent is starting: its store is not open yet")
        found = await asyncio.to_thread(read_timeline, store.path, order_id)
        shown = timeline_view(found, access.scrub) if found.known else None
        return _html(render.timeline_page(site, shown, order_id), 200 if shown else 404)

    @routes.post("/status/login")
    async def login(request: Request, body: Login) -> JSONResponse:
        if not guard.token_configured:
            raise HTTPException(403, WRITES_REFUSED)
        guard.may_read(request)  # the Host check when bound to loopback
        guard.check_csrf(request)
        if not guard.token_ok(body.token):
            raise HTTPException(401, "wrong token")
        response = JSONResponse({"logged_in": True})
        response.set_cookie(
            SESSION_COOKIE,
            guard.session_value(),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    @routes.post("/status/logout")
    async def logout(request: Request) -> JSONResponse:
        guard.check_csrf(request)
        response = JSONResponse({"logged_in": False})
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @routes.post("/status/approvals/{row_id}/approve")
    async def approve(request: Request, row_id: RowId) -> Any:
        guard.write(request)
        return await commands.approve(commands.Parts(view), row_id)

    @routes.post("/status/approvals/{row_id}/reject")
    async def reject(request: Request, row_id: RowId, body: Reason) -> Any:
        guard.write(request)
        return await commands.reject(commands.Parts(view), row_id, body.reason)

    @routes.post("/status/dead-letters/{letter_id}/retry")
    async def retry(request: Request, letter_id: RowId) -> Any:
        guard.write(request)
        return await commands.retry(commands.Parts(view), letter_id, access.scrub)

    @routes.post("/status/dead-letters/{letter_id}/discard")
    async def discard(request: Request, letter_id: RowId) -> Any:
        guard.write(request)
        return await commands.discard(commands.Parts(view), letter_id)

    return routes


def changed_sections(sections: dict[str, str], logged_in: bool, known: str) -> Response:
    """The sections whose tag differs from the page's (``known``: the ETag it last got), or
    304 when none does. The ETag lists a short hash per section, so the agent keeps no state
    per reader and a poll carries only what changed (most polls: a few hundred bytes)."""
    tags = _tags(sections)
    etag = sections_etag(sections)
    seen = dict(part.split(":", 1) for part in known.strip('W/" ').split(".") if ":" in part)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    changed = {name: html for name, html in sections.items() if seen.get(name) != tags[name]}
    if not changed:
        return Response(status_code=304, headers=headers)
    return JSONResponse({"sections": changed, "logged_in": logged_in}, headers=headers)


def sections_etag(sections: dict[str, str]) -> str:
    """The ETag of ``sections``: each section's name and a short hash of its HTML."""
    return '"' + ".".join(f"{name}:{tag}" for name, tag in _tags(sections).items()) + '"'


def _tags(sections: dict[str, str]) -> dict[str, str]:
    return {name: hashlib.sha256(html.encode()).hexdigest()[:12] for name, html in sections.items()}


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


# ---- the data, through the API's view builders -------------------------------------------------


async def _sections(
    view: AgentView, scrub: Scrub, history: DepthHistory, wanted: Filters
) -> dict[str, str]:
    store, downlink = view.store, view.downlink
    if store is None or downlink is None:
        return dict(statusrender.STARTING)
    outbox = await store.outbox.stats()
    status = status_view(
        view, outbox, await store.inbox.inbox_stats(), downlink_counts(downlink), scrub
    )
    site = view.config.site.id
    waiting = [
        await waiting_view(row, site, store.inbox, scrub)
        for row in await store.inbox.waiting_approval()
    ]
    letters = [
        dead_letter_view(letter, scrub)
        for letter in await store.inbox.dead_letters(DEAD_LETTERS_SHOWN)
    ]
    schedule = render.schedule(await schedule_page(store.path, wanted), wanted)
    approvals = render.approvals(waiting, _rules(view))
    tick = time.monotonic()
    current = DepthSample(
        tick, {lane: lane_view.depth for lane, lane_view in status.outbox.lanes.items()}
    )
    machines = view.pipeline.latest() if view.pipeline is not None else {}
    samples = [*history.samples, current]
    return statusrender.sections(status, schedule, approvals, letters, machines, samples, tick)


def _rules(view: AgentView) -> render.Rules:
    """The approval rules as configured, for the card of a held change."""
    policy = view.config.schedule
    return render.Rules(
        frozen_horizon=f"{policy.frozen_horizon.total_seconds() / 3600:g} h",
        quantity_threshold=f"{policy.quantity_threshold} %",
    )

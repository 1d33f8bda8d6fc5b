"""The local API's limits, checked before a body is read: what a hostile or broken client can
cost the agent is bounded by the config, not by what it sends.

    request head ─▶ URL > max_url_size ─────────────────▶ 414
                    headers > max_header_size ──────────▶ 431
                    Content-Length > max_body_size ─────▶ 413   (nothing read)
                    POST /api/…: access rule ───────────▶ 401 / 403 (nothing read)
                    POST /api/… with a body, not JSON ──▶ 415   (nothing read)
                 ─▶ body read in chunks, counted ───────▶ 413 at the first byte too many
                 ─▶ /api/…: ``strict_json`` (the down topics' reader) ─▶ 422 with the reason
                 ─▶ the app, given the (bounded) body

The access rule runs here as well as in the routers' dependencies, so that a caller without
the token learns nothing about the body's validation (401 before 422) and cannot make the agent
read a body at all. Heads too large for the parser (a 10 MB URL) are answered by the server's
protocol (``apiserver.py``) with 414/431 before they reach this middleware.

A refused body is not stored: its rest is read and dropped for at most ``DRAIN_SECONDS``, so a
client that sends before it reads (most do; ``Expect: 100-continue`` clients send nothing) sees
the answer instead of a reset connection; the connection is closed after the answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException
from fastapi.security import HTTPAuthorizationCredentials
from starlette.requests import Request

from plantsync.config.model import ApiConfig
from plantsync.contracts.inbound import strict_json
from plantsync.errors import MessageRejected
from plantsync.web.access import Access

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DRAIN_SECONDS = 2.0
"""How long the rest of a refused body is read and dropped before the connection closes."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_TYPES = ("application/json",)


class Refused(Exception):
    """A request refused by a limit: its status, its one-line reason, extra headers."""

    def __init__(
        self, status: int, detail: str | list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class RequestLimits:
    """ASGI middleware: the checks of the module docstring, in that order."""

    def __init__(self, app: ASGIApp, *, config: ApiConfig, access: Access) -> None:
        self._app, self._access = app, access
        self._max_body = int(config.max_body_size)
        self._max_url, self._max_header = config.max_url_size, config.max_header_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = _headers(scope)
        has_body = scope["method"] in _BODY_METHODS and _announces_body(headers)
        try:
            self._check_head(scope, headers)
            if has_body:
                body = await self._read_body(receive)
                if scope["path"].startswith("/api/"):
                    _strict(body)
        except Refused as refused:
            if has_body:
                await _drain(receive)
            await _answer(send, refused, close=has_body)
            return
        if has_body:
            receive = _replay(body, receive)
        await self._app(scope, receive, send)

    def _check_head(self, scope: Scope, headers: dict[str, str]) -> None:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(scope["query_string"])
        if target > self._max_url:
            raise Refused(414, f"the URL has {target} bytes, the limit is {self._max_url}")
        head = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if head > self._max_header:
            raise Refused(431, f"the headers have {head} bytes, the limit is {self._max_header}")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise Refused(400, "Content-Length is not a number")
            if int(length) > self._max_body:
                raise Refused(413, self._too_large(int(length)))
        if scope["method"] == "POST" and scope["path"].startswith("/api/"):
            self._authorized(scope, headers)
            content_type = headers.get("content-type", "").split(";")[0].strip().lower()
            if _announces_body(headers) and not _is_json(content_type):
                shown = content_type[:60] or "none"
                raise Refused(415, f"the body must be application/json, not {shown}")

    def _authorized(self, scope: Scope, headers: dict[str, str]) -> None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        credentials = None
        if scheme.lower() == "bearer" and token:
            credentials = HTTPAuthorizationCredentials(scheme=scheme, credentials=token.strip())
        try:
            self._access.write(Request(scope), credentials)
        except HTTPException as exc:
            raise Refused(exc.status_code, str(exc.detail), dict(exc.headers or {})) from exc

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise Refused(413, self._too_large(None))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _too_large(self, size: int | None) -> str:
        has = f"{size} bytes" if size is not None else "more bytes"
        return f"the body has {has}; the limit is {self._max_body} (api.max_body_size)"


def _strict(body: bytes) -> None:
    """The down topics' JSON reader on the API's bodies too: one rule for what enters."""
    try:
        strict_json(body)
    except MessageRejected as rejected:
        # In the shape of every other 422 of the API (``api._invalid_request``).
        detail = [{"loc": ["body"], "msg": rejected.detail, "type": "json_invalid"}]
        raise Refused(422, detail) from rejected


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones: all we read here
    are single-valued)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _announces_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    if length is not None:
        return length != "0"
    return "chunked" in headers.get("transfer-encoding", "").lower()


def _is_json(content_type: str) -> bool:
    return content_type in _JSON_TYPES or content_type.endswith("+json")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then defers to the server's
    (for the disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body, for at most ``DRAIN_SECONDS``."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    return


async def _answer(send: Send, refused: Refused, *, close: bool) -> None:
    body = json.dumps({"detail": refused.detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refused.headers.items()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refused.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

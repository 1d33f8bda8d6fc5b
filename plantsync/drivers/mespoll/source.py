"""One MES REST endpoint, read one page at a time: the request, the answer, the mapping.

    fetch(cursor, etag, last_modified)
               ─▶ <method> <url>?<query>&<cursor param>=<cursor, or the configured initial>
                    If-None-Match / If-Modified-Since from the last answer to the same request
       200   the body, read in chunks up to max_response_size ─▶ strict JSON ─▶ records ─▶
             payloads (and rejected records) + the state after this page + "more pages now"
       304   nothing new; the state stays
       429, 5xx          SourceUnavailable (Throttled with Retry-After when the MES sends it)
       401, 403, other 4xx   LinkMisconfigured: the config (URL, credentials) must change
       too large, not JSON, no records array   BadAnswer: nothing maps, the state stays

The driver makes one request per ``fetch`` and keeps no state between them: the cursor lives in
the store, the schedule, retries and the rate limit in the agent (``agent/polling``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Self

import httpx

from plantsync.config.plant import CursorKind, PollEndpointConfig
from plantsync.contracts.envelope import Contract
from plantsync.contracts.inbound import strict_json
from plantsync.contracts.orders import ReasonCode
from plantsync.drivers.common.http import HttpLink, map_httpx_exceptions
from plantsync.drivers.mespoll.mapping import BadAnswer, RecordMapping, Rejected, found, resolve
from plantsync.errors import LinkMisconfigured, MessageRejected, SourceUnavailable, Throttled

MAX_RETRY_AFTER_SECONDS = 3600.0
"""A Retry-After longer than this is taken as this: an MES's typo must not silence it for days."""


@dataclass(frozen=True, slots=True)
class Page:
    """One answer, mapped."""

    payloads: list[Contract]
    """The records that mapped, in the answer's order."""
    rejected: list[Rejected]
    """The records that did not, each with its reason."""
    cursor: str | None
    """Where the next request starts (the store keeps it with the page's messages)."""
    etag: str | None
    """The answer's ETag, kept only when the next request is this one again (same cursor)."""
    last_modified: str | None
    """Likewise its Last-Modified."""
    more: bool
    """Another page is waiting now: read it before the next scheduled poll."""
    not_modified: bool = False
    size: int = 0
    """Bytes of the answer's body."""
    records: int = field(default=0)


class MesPollSource(HttpLink):
    """Reads one ``[[mes_poll]]`` endpoint. Enter it to build the HTTP client, ``fetch`` pages."""

    def __init__(
        self, config: PollEndpointConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(transport)
        self.config = config
        self.mapping = RecordMapping(config)

    @property
    def name(self) -> str:
        return f"mes-poll:{self.config.name}"

    async def __aenter__(self) -> Self:
        config = self.config
        auth: httpx.Auth | None = None
        headers = {"Accept": "application/json", **config.headers}
        if config.auth is not None and config.auth.kind == "bearer":
            assert config.auth.token is not None
            headers["Authorization"] = f"Bearer {config.auth.token.get_secret_value()}"
        elif config.auth is not None:
            assert config.auth.username is not None
            assert config.auth.password is not None
            auth = httpx.BasicAuth(config.auth.username, config.auth.password.get_secret_value())
        self._open(
            f"mes-poll:{config.name}",
            config.tls,
            config.timeout.total_seconds(),
            headers,
            auth=auth,
        )
        return self

    async def fetch(
        self, cursor: str | None, etag: str | None = None, last_modified: str | None = None
    ) -> Page:
        """One request from ``cursor`` (None: the configured initial value), with the last
        answer's validators; see the module docstring for how the answer is read."""
        if self._client is None:
            raise SourceUnavailable(f"{self.name}: not connected")
        sent = cursor if cursor is not None else self.config.cursor.initial
        request = self._client.build_request(
            self.config.method,
            self.config.url,
            params=self._params(sent),
            headers=_validators(etag, last_modified),
        )
        with map_httpx_exceptions(self.name):
            response = await self._client.send(request, stream=True)
            try:
                _check_status(self.name, response)
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    return Page([], [], sent, etag, last_modified, more=False, not_modified=True)
                body = await self._body(response)
            finally:
                await response.aclose()
        return self._page(body, sent, response.headers)

    def _params(self, sent: str | None) -> dict[str, str]:
        params = dict(self.config.query)
        cursor = self.config.cursor
        if cursor.kind is not CursorKind.NONE and sent is not None:
            assert cursor.param is not None
            params[cursor.param] = sent
        return params

    async def _body(self, response: httpx.Response) -> bytes:
        """The body, never more than ``max_response_size`` of it read."""
        limit = int(self.config.max_response_size)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BadAnswer(ReasonCode.OVERSIZED, _too_large(declared, limit), b"")
        chunks, size = [], 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size > limit:
                raise BadAnswer(ReasonCode.OVERSIZED, _too_large(f"over {limit}", limit), chunk)
            chunks.append(chunk)
        return b"".join(chunks)

    def _page(self, body: bytes, sent: str | None, headers: httpx.Headers) -> Page:
        try:
            answer = strict_json(body)
        except MessageRejected as exc:
            raise BadAnswer(ReasonCode.MALFORMED_JSON, exc.detail, body) from exc
        records = self.mapping.records(answer, body)
        payloads: list[Contract] = []
        rejected: list[Rejected] = []
        for record in records:
            mapped = self.mapping.payload(record)
            (rejected if isinstance(mapped, Rejected) else payloads).append(mapped)  # type: ignore[arg-type]
        following = self._next_cursor(answer, records, sent, body)
        more = following != sent and bool(records)
        if self.config.more is not None:
            more = more and resolve(answer, self.config.more) is True
        etag, modified = (
            (headers.get("ETag"), headers.get("Last-Modified"))
            if following == sent
            else (None, None)
        )
        return Page(
            payloads,
            rejected,
            following,
            etag,
            modified,
            more,
            size=len(body),
            records=len(records),
        )

    def _next_cursor(
        self, answer: Any, records: list[Any], sent: str | None, body: bytes
    ) -> str | None:
        """The cursor after this page: the next token, or the last record's id or time."""
        cursor = self.config.cursor
        following: str | None = sent
        if cursor.kind is CursorKind.PAGE_TOKEN:
            assert cursor.next is not None
            token = resolve(answer, cursor.next)
            if found(token) and isinstance(token, str | int) and str(token):
                following = str(token)
        elif cursor.kind is not CursorKind.NONE and records:
            assert cursor.field is not None
            last = resolve(records[-1], cursor.field)
            if not found(last) or not isinstance(last, str | int) or isinstance(last, bool):
                detail = f"cursor field {cursor.field!r} not found in the page's last record"
                raise BadAnswer(ReasonCode.SCHEMA_VIOLATION, detail, body)
            following = str(last)
        return following


def _validators(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag is not None:
        headers["If-None-Match"] = etag
    if last_modified is not None:
        headers["If-Modified-Since"] = last_modified
    return headers


def _check_status(name: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 300 or status == httpx.codes.NOT_MODIFIED:
        return
    what = f"{name} answered {status} {response.reason_phrase}"
    if status == httpx.codes.TOO_MANY_REQUESTS or status >= 500:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            raise Throttled(f"{what}, retry after {retry_after:.0f} s", retry_after)
        raise SourceUnavailable(what)
    raise LinkMisconfigured(f"{what}: check the endpoint's url, query and auth")


def _retry_after(value: str | None) -> float | None:
    """Retry-After: seconds, or an HTTP date (RFC 9110 10.2.3)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    with contextlib.suppress(TypeError, ValueError):
        return min(
            max(0.0, parsedate_to_datetime(value).timestamp() - time.time()),
            MAX_RETRY_AFTER_SECONDS,
        )
    return None


def _too_large(size: str, limit: int) -> str:
    return f"answer of {size} bytes is larger than max_response_size ({limit} bytes): not read"

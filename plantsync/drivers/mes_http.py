"""MES over REST: schedule changes POSTed with an idempotency key.

    POST <url>/orders/<order_id>/changes
    Idempotency-Key: <order id>@<revision>
    {"type": "schedule.revision", "order_id": "...", "revision": 3, "change": {...}}

    2xx                  applied
    409 Conflict         applied: the MES already has this key (a retry after a crash, or
                         the same revision again in a snapshot)
    other 4xx            refused by the MES: its reason goes back to HQ as "rejected"
    5xx, timeout, refused connection
                         SourceUnavailable: the downlink retries with backoff, HQ sees "pending"

The driver makes one attempt per call and has no retry loop: the agent owns retries.
"""

from __future__ import annotations

import contextlib
from typing import Self
from urllib.parse import quote

import httpx

from plantsync.config.plant import MesConfig
from plantsync.drivers.base import OrderChange, PlantVerdict
from plantsync.drivers.common.http import HttpLink, map_httpx_exceptions
from plantsync.errors import LinkMisconfigured, SourceUnavailable

_REASON_LIMIT = 300
"""Characters of an MES error body carried into an acknowledgement."""


class MesHttpSink(HttpLink):
    """Delivers order changes to an MES REST endpoint."""

    def __init__(
        self, config: MesConfig, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(transport)
        self._config = config

    @property
    def name(self) -> str:
        return "mes"

    async def __aenter__(self) -> Self:
        headers = {}
        if self._config.token is not None:
            headers["Authorization"] = f"Bearer {self._config.token.get_secret_value()}"
        self._open(
            "mes",
            self._config.tls,
            self._config.request_timeout.total_seconds(),
            headers,
            base_url=self._config.url.rstrip("/") + "/",
        )
        return self

    async def apply(self, change: OrderChange) -> PlantVerdict:
        """POST one change; see the module docstring for how answers are read."""
        if self._client is None:
            raise SourceUnavailable("mes: not connected")
        with map_httpx_exceptions(f"mes {self._config.url}"):
            response = await self._client.post(
                f"orders/{quote(change.order_id, safe='')}/changes",
                json={
                    "type": change.change_type,
                    "order_id": change.order_id,
                    "revision": change.revision,
                    "change": change.body,
                },
                headers={"Idempotency-Key": change.idempotency_key},
            )
        return _verdict(response)


def _verdict(response: httpx.Response) -> PlantVerdict:
    status = response.status_code
    if status < 300 or status == httpx.codes.CONFLICT:
        return PlantVerdict(applied=True)
    if status >= 500:
        raise SourceUnavailable(f"mes answered {status} {response.reason_phrase}")
    if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise LinkMisconfigured(f"mes refused the credentials: {status} {response.reason_phrase}")
    return PlantVerdict(applied=False, reason=f"mes {status}: {_reason(response)}")


def _reason(response: httpx.Response) -> str:
    """The MES's own words: a JSON ``detail``/``message``/``error`` field, else the body."""
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            for key in ("detail", "message", "error"):
                if isinstance(body.get(key), str):
                    return str(body[key])[:_REASON_LIMIT]
    return response.text[:_REASON_LIMIT] or response.reason_phrase

"""A simulated MES that plantsync polls: FastAPI on uvicorn, on a free loopback port.

    GET /api/v1/workorders?after=<id>&limit=N        paged by last id    {"items", "has_more"}
    GET /api/v1/downtime?since=<time>&limit=N        paged by timestamp  {"data": {"events"}}
    GET /api/v1/throughput?page_token=T&page_size=N  paged by token      {"records", ...token}
    GET /api/v1/equipment                            equipment states    ETag, If-None-Match
    GET /api/v1/shift-report                         the last shift      ETag, Last-Modified
    GET /api/v1/capacity                             hours per shift     ETag, Last-Modified
    POST /_sim/faults                                 inject faults at run time (JSON: Faults)

Records are in the MES's own shape, not plantsync's (``sim/mes_endpoints.py`` holds the
config that maps them): ``status: "RUN"``, ``planned: true``, counts as JSON numbers. Every
record has an id that only grows and an MES time (``modified``) that only grows, both from the
MES's clock, which ``Faults.clock_skew`` moves away from this machine's.

Faults, each for the next N requests (or while set): ``delay`` (slow), ``status`` 500,
``status`` 429 with ``retry_after``, ``malformed`` (a truncated JSON answer), ``oversized`` (an
answer of ``oversized_bytes``); ``delete_and_readd`` removes a record and appends it again with
a new id and time, as an MES that re-inserts a corrected row does.

``tick()`` moves the plant along (a throughput interval per machine, now and then a downtime
or a work order state change); with ``tick_seconds`` set, a background task calls it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import random
import socket
import ssl
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import uvicorn
from fastapi import FastAPI, Request, Response

EQUIPMENT = ("press-1", "press-2", "lathe-1")
REASONS = (("MECH-01", "hydraulic leak", False), ("CHG-02", "die change", True))
STATES = ("RUN", "HOLD", "DONE")


@dataclass
class Faults:
    """What the MES does wrong, set by a test or ``POST /_sim/faults``."""

    delay: float = 0.0
    """Seconds every answer waits (slow MES)."""
    status: int | None = None
    """Answer the next ``count`` requests with this status (500, 429 …)."""
    retry_after: float | None = None
    """Seconds in a 429's (or 503's) Retry-After header."""
    malformed: int = 0
    """The next N answers are cut in the middle of their JSON."""
    oversized: int = 0
    """The next N answers are ``oversized_bytes`` long."""
    oversized_bytes: int = 8 * 1024**2
    count: int = 0
    """Requests still answered with ``status``."""
    clock_skew: float = 0.0
    """Seconds the MES's clock is ahead of this machine's (negative: behind)."""


@dataclass
class MesRecords:
    """The MES's tables; every record keeps its id and MES time (``modified``)."""

    workorders: list[dict[str, Any]] = field(default_factory=list)
    downtime: list[dict[str, Any]] = field(default_factory=list)
    throughput: list[dict[str, Any]] = field(default_factory=list)
    next_id: int = 1
    last_time: datetime = datetime(2000, 1, 1, tzinfo=UTC)


class SimulatedMes:
    """The MES; ``async with SimulatedMes() as mes:`` serves it on ``mes.url``."""

    def __init__(
        self,
        *,
        tick_seconds: float | None = None,
        seed: int = 17,
        tls: MesTls | None = None,
    ) -> None:
        self.faults = Faults()
        self.records = MesRecords()
        self.requests: list[str] = []
        """Every request's path and query, in order (for tests)."""
        self.authorizations: list[str | None] = []
        """Every request's Authorization header, in order (for tests)."""
        self._tls = tls
        self._tick_seconds = tick_seconds
        self._rng = random.Random(seed)  # noqa: S311 - simulated data, not cryptography
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._server = _QuietServer(
            uvicorn.Config(
                _app(self),
                log_config=None,
                lifespan="off",
                access_log=False,
                timeout_graceful_shutdown=1,
                **_tls_options(tls),
            )
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._shift = 0

    @property
    def url(self) -> str:
        host, port = self._listener.getsockname()[:2]
        return f"{'https' if self._tls else 'http'}://{host}:{port}"

    def now(self) -> datetime:
        """The MES's clock: this machine's, moved by ``clock_skew``, and never going back."""
        now = datetime.now(UTC) + timedelta(seconds=self.faults.clock_skew)
        now = max(now, self.records.last_time + timedelta(milliseconds=1))
        self.records.last_time = now
        return now

    async def __aenter__(self) -> Self:
        # The socket listens already: a request sent before uvicorn runs waits in its backlog.
        self._tasks.append(asyncio.create_task(self._server.serve(sockets=[self._listener])))
        if self._tick_seconds is not None:
            self._tasks.append(asyncio.create_task(self._ticking(self._tick_seconds)))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        # A request held by ``Faults.delay`` is cut short: uvicorn waits for open requests at
        # most ``timeout_graceful_shutdown``.
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._listener.close()

    def add_workorder(self, work_order: str, status: str = "RUN", good: int = 0) -> dict[str, Any]:
        """Record a work order's state change; returns the record."""
        return self._append(
            self.records.workorders,
            {
                "wo": work_order,
                "op": "10",
                "resource": EQUIPMENT[0],
                "status": status,
                "qty_good": good,
                "qty_scrap": 0,
            },
        )

    def add_downtime(
        self, machine: str, code: str = "MECH-01", *, planned: bool = False, minutes: int = 5
    ) -> dict[str, Any]:
        """Record a finished downtime event of ``minutes``; returns the record."""
        end = self.now()
        return self._append(
            self.records.downtime,
            {
                "event_id": f"DT-{self.records.next_id}",
                "machine": machine,
                "from": _iso(end - timedelta(minutes=minutes)),
                "to": _iso(end),
                "code": code,
                "text": dict((c, t) for c, t, _ in REASONS).get(code, code),
                "planned": planned,
            },
        )

    def add_throughput(self, machine: str, good: int, scrap: int = 0) -> dict[str, Any]:
        """Record one minute's counts of ``machine``; returns the record."""
        end = self.now()
        return self._append(
            self.records.throughput,
            {
                "equipment": machine,
                "start": _iso(end - timedelta(minutes=1)),
                "end": _iso(end),
                "good": good,
                "scrap": scrap,
            },
        )

    def delete_and_readd(self, table: str, record_id: int) -> dict[str, Any]:
        """Remove a record and append it again with a new id and time (a corrected row)."""
        rows: list[dict[str, Any]] = getattr(self.records, table)
        (row,) = [row for row in rows if row["id"] == record_id]
        rows.remove(row)
        fields = {key: value for key, value in row.items() if key not in ("id", "modified")}
        return self._append(rows, fields)

    def tick(self) -> None:
        """One step of the plant: counts for every machine, sometimes a downtime or a state."""
        for machine in EQUIPMENT:
            self.add_throughput(machine, self._rng.randint(20, 40), self._rng.randint(0, 2))
        if self._rng.random() < 0.3:
            code, _, planned = self._rng.choice(REASONS)
            self.add_downtime(self._rng.choice(EQUIPMENT), code, planned=planned)
        if self._rng.random() < 0.3:
            self.add_workorder(f"WO-{self._rng.randint(1001, 1004)}", self._rng.choice(STATES))

    def close_shift(self) -> None:
        """End the current shift: the shift report and capacity answers change."""
        self._shift += 1

    def _append(self, rows: list[dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
        record = {"id": self.records.next_id, **fields, "modified": _iso(self.now())}
        self.records.next_id += 1
        rows.append(record)
        return record

    async def _ticking(self, seconds: float) -> None:
        # A plant already running: one order in work, one changeover logged.
        self.add_workorder("WO-1001", "RUN", good=0)
        self.add_downtime(EQUIPMENT[1], "CHG-02", planned=True, minutes=20)
        while True:
            await asyncio.sleep(seconds)
            self.tick()

    # The answers, read by the routes in ``_app``.

    def shift(self) -> tuple[str, datetime, datetime]:
        """The last closed shift: its id, start and end (8 h shifts from a fixed day)."""
        start = datetime(2026, 3, 2, 6, tzinfo=UTC) + timedelta(hours=8 * self._shift)
        return f"S{self._shift + 1}", start, start + timedelta(hours=8)

    def shift_report(self) -> dict[str, Any]:
        shift_id, start, end = self.shift()
        lines = [
            {
                "equipment": machine,
                "shift_start": _iso(start),
                "shift_end": _iso(end),
                "good": 900 + 10 * index + self._shift,
                "total": 930 + 10 * index + self._shift,
            }
            for index, machine in enumerate(EQUIPMENT)
        ]
        return {"shift": shift_id, "lines": lines}

    def capacity(self) -> dict[str, Any]:
        shift_id, start, end = self.shift()
        centers = []
        for index, machine in enumerate(EQUIPMENT):
            maintenance = (
                [
                    {
                        "start": _iso(start),
                        "end": _iso(start + timedelta(minutes=30)),
                        "reason": "lubrication",
                    }
                ]
                if index == 0
                else []
            )
            centers.append(
                {
                    "wc": machine,
                    "shift": shift_id,
                    "shift_start": _iso(start),
                    "shift_end": _iso(end),
                    "hours": 7.5 if maintenance else 8.0,
                    "maintenance": maintenance,
                }
            )
        return {"work_centers": centers}

    def equipment_states(self) -> list[dict[str, Any]]:
        return [{"equipment": machine, "state": "RUN"} for machine in EQUIPMENT]


@dataclass(frozen=True)
class MesTls:
    """HTTPS for the simulated MES; with ``client_ca`` it asks for a client certificate
    signed by it (mutual TLS) and refuses a client without one."""

    cert_file: Path
    key_file: Path
    client_ca: Path | None = None


def _tls_options(tls: MesTls | None) -> dict[str, Any]:
    if tls is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
    if tls.client_ca is not None:
        options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return options


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the test or the demo owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _after(rows: list[dict[str, Any]], key: str, value: Any, limit: int) -> list[dict[str, Any]]:
    return [row for row in rows if value is None or row[key] > value][:limit]


def _token(record_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{record_id}".encode()).decode()


def _from_token(token: str | None) -> int:
    if not token:
        return 0
    with contextlib.suppress(ValueError):
        return int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("after:"))
    return 0


def _app(mes: SimulatedMes) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def faults(request: Request, call_next: Any) -> Response:
        mes.requests.append(f"{request.url.path}?{request.url.query}")
        mes.authorizations.append(request.headers.get("authorization"))
        fault = mes.faults
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if request.url.path.startswith("/_sim"):
            answer: Response = await call_next(request)
            return answer
        if fault.status is not None and fault.count > 0:
            fault.count -= 1
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(int(fault.retry_after))
            return Response(b'{"error": "injected"}', fault.status, headers, "application/json")
        if fault.oversized > 0:
            fault.oversized -= 1
            return Response(
                b"[" + b" " * fault.oversized_bytes + b"]", 200, media_type="application/json"
            )
        answer = await call_next(request)
        if fault.malformed > 0:
            fault.malformed -= 1
            body = b"".join([chunk async for chunk in answer.body_iterator])  # type: ignore[attr-defined]
            return Response(body[: len(body) // 2], 200, media_type="application/json")
        return answer

    @app.post("/_sim/faults")
    async def set_faults(request: Request) -> dict[str, Any]:
        for key, value in (await request.json()).items():
            setattr(mes.faults, key, value)
        return asdict(mes.faults)

    @app.get("/api/v1/workorders")
    async def workorders(after: int | None = None, limit: int = 100) -> dict[str, Any]:
        rows = _after(mes.records.workorders, "id", after, limit + 1)
        return {"items": rows[:limit], "has_more": len(rows) > limit}

    @app.get("/api/v1/downtime")
    async def downtime(since: str | None = None, limit: int = 100) -> dict[str, Any]:
        return {"data": {"events": _after(mes.records.downtime, "modified", since, limit)}}

    @app.get("/api/v1/throughput")
    async def throughput(page_token: str | None = None, page_size: int = 100) -> dict[str, Any]:
        rows = _after(mes.records.throughput, "id", _from_token(page_token), page_size)
        last = rows[-1]["id"] if rows else _from_token(page_token)
        return {"records": rows, "next_page_token": _token(last)}

    @app.get("/api/v1/equipment")
    async def equipment(request: Request) -> Response:
        return _cached(request, {"equipment": mes.equipment_states()}, None)

    @app.get("/api/v1/shift-report")
    async def shift_report(request: Request) -> Response:
        return _cached(request, mes.shift_report(), mes.shift()[2])

    @app.get("/api/v1/capacity")
    async def capacity(request: Request) -> Response:
        return _cached(request, mes.capacity(), mes.shift()[2])

    return app


def _cached(request: Request, body: Any, modified: datetime | None) -> Response:
    """A JSON answer with an ETag (and Last-Modified); 304 when the client has it already."""
    payload = json.dumps(body).encode()
    etag = '"' + hashlib.sha256(payload).hexdigest()[:16] + '"'
    headers = {"ETag": etag}
    if modified is not None:
        headers["Last-Modified"] = format_datetime(modified, usegmt=True)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(payload, 200, headers, "application/json")

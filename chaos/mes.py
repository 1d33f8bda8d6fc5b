"""A real HTTP server playing the plant's MES, on a loopback port.

Used by the MES driver's and the downlink's tests (through ``tests/fixtures/mes.py``) and by the
chaos run. It keeps what it applied by idempotency key, as a real MES that supports idempotent
POSTs does, records every change that took effect (so a change applied twice is visible), and
can be made to fail (5xx), to refuse an order (422), or to stall before or after applying.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from plantsync.tools.localbroker import free_port


@dataclass(frozen=True)
class Effect:
    """One change that took effect at the MES (answered 201)."""

    order_id: str
    revision: int
    idempotency_key: str
    change_type: str


@dataclass
class MesState:
    """What the MES received and how it should answer."""

    applied: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Idempotency key → the change, for every change the MES took effect on."""
    effects: list[Effect] = field(default_factory=list)
    """Every change that took effect, in order: the same (order, revision) twice is a double
    apply even under two different keys."""
    requests: int = 0
    replays: int = 0
    """Requests answered 409: a key seen before (the agent retried a change already applied)."""
    failed: int = 0
    """Requests answered with ``fail_with``."""
    fail_with: int | None = None
    """Answer every request with this status (e.g. 500) while set."""
    refuse_orders: dict[str, str] = field(default_factory=dict)
    """Order id → the reason a 422 carries."""
    stall_before: float = 0.0
    """Seconds to wait before deciding (the client times out; the change applies later)."""
    response_delay: float = 0.0
    """Seconds to wait after applying a change before answering: a crash window."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def applied_orders(self) -> list[tuple[str, int]]:
        with self.lock:
            return [(c["order_id"], c["revision"]) for c in self.applied.values()]

    def applied_twice(self) -> dict[tuple[str, int], int]:
        """(order id, revision) → how often it took effect, for those that did more than once."""
        with self.lock:
            counts = Counter((effect.order_id, effect.revision) for effect in self.effects)
        return {key: count for key, count in counts.items() if count > 1}

    def effect_types(self, order_id: str, revision: int) -> list[str]:
        """The change types that made (order, revision) take effect, in order: tells a resend
        under a new key (e.g. a snapshot) from a retry."""
        with self.lock:
            return [
                e.change_type
                for e in self.effects
                if (e.order_id, e.revision) == (order_id, revision)
            ]

    def latest_revisions(self) -> dict[str, int]:
        """Order id → the highest revision that took effect."""
        latest: dict[str, int] = {}
        with self.lock:
            for effect in self.effects:
                latest[effect.order_id] = max(effect.revision, latest.get(effect.order_id, 0))
        return latest


class _Handler(BaseHTTPRequestHandler):
    state: MesState

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except (ValueError, OSError):
            # A request cut short: the agent was killed while sending it. Nothing takes effect.
            self.close_connection = True
            return
        key = self.headers.get("Idempotency-Key", "")
        time.sleep(self.state.stall_before)
        with self.state.lock:
            self.state.requests += 1
            status, answer = self._decide(key, body)
        time.sleep(self.state.response_delay)
        payload = json.dumps(answer).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a timeout): the change stays applied, as in a real MES

    def _decide(self, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        state = self.state
        if state.fail_with is not None:
            state.failed += 1
            return state.fail_with, {"detail": "MES database is down"}
        if body["order_id"] in state.refuse_orders:
            return 422, {"detail": state.refuse_orders[body["order_id"]]}
        if key in state.applied:
            state.replays += 1
            return 409, {"detail": "already applied"}
        state.applied[key] = body
        state.effects.append(
            Effect(body["order_id"], int(body["revision"]), key, str(body.get("type")))
        )
        return 201, {"status": "applied"}

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: callers assert on state, not on access logs."""


class MesServer:
    """Starts and stops the MES on one loopback port, keeping its state across restarts."""

    def __init__(self) -> None:
        self.port = free_port()
        self.state = MesState()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True  # a stalled request must not hold up stop()
        self._thread = threading.Thread(target=self._server.serve_forever, name="mes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None

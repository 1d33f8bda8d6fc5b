"""Operator commands: the running agent's facts in a terminal, and its store read directly.

    plantsync status                      GET /api/v1/status of the running agent
    plantsync deadletter list|retry|discard  the API's dead-letter endpoints
    plantsync buffer inspect --config P   the store file, read-only (the agent may be running:
                                          WAL lets a reader in beside the writer)
    plantsync buffer replay --since T     archived messages back into the outbox, historical
                                          (``buffer/archive.py``); a second writer beside a
                                          running agent, serialised by SQLite's lock
    plantsync order ORDER_ID --config P   one order's timeline, from the store read-only
                                          (``buffer/history``): it answers with the agent
                                          stopped too, and needs no token, only the file

Each API command takes ``--url`` (default http://127.0.0.1:8470) and ``--token-env`` (the name
of the environment variable holding the API token; the token never goes on a command line,
where ``ps`` would show it). An agent that does not answer is one clear line and exit 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import TypeAdapter, ValidationError

from plantsync.buffer import inspect as inspection
from plantsync.buffer.archive import replay
from plantsync.buffer.database import Database
from plantsync.config.model import AgentConfig
from plantsync.config.types import Duration

DEFAULT_URL = "http://127.0.0.1:8470"
DEFAULT_TOKEN_ENV = "PLANTSYNC_API__TOKEN"  # noqa: S105 - the variable's name, not a token
REQUEST_TIMEOUT = 10.0


class AgentUnreachable(Exception):
    """The agent's API did not answer, or refused; the message says which, in one line."""


class AgentApi:
    """The few calls the operator commands make to a running agent."""

    def __init__(self, url: str, token_env: str) -> None:
        self.url = url.rstrip("/")
        token = os.environ.get(token_env)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str) -> Any:
        return self._call("GET", path)

    def post(self, path: str) -> Any:
        return self._call("POST", path)

    def _call(self, method: str, path: str) -> Any:
        try:
            answer = httpx.request(
                method, self.url + path, headers=self._headers, timeout=REQUEST_TIMEOUT
            )
        except httpx.HTTPError as exc:
            raise AgentUnreachable(f"the agent is not reachable at {self.url}: {exc}") from exc
        if answer.status_code >= 400:
            detail = _detail(answer)
            raise AgentUnreachable(f"{method} {path}: HTTP {answer.status_code}: {detail}")
        return answer.json()


def _detail(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("detail", answer.text))[:300]
    except ValueError:
        return answer.text[:300]


# ---- status --------------------------------------------------------------------------------


def print_status(status: dict[str, Any], out: IO[str]) -> None:
    """The agent's status as a few aligned lines."""
    out.write(
        f"site {status['site']}  version {status['version']}  config {status['config_hash']}"
        f"  up {_duration(status['uptime_seconds'])}\n"
    )
    out.write("links:\n")
    for name, link in status["links"].items():
        activity = link["last_activity"] or "never"
        out.write(
            f"  {name:<20} {link['state']:<10} since {link['since']}  last activity {activity}"
            f"  connects {link['connects']}  failures {link['failures']}\n"
        )
        if link["last_error"]:
            out.write(f"  {'':<20} last error: {link['last_error']}\n")
    outbox = status["outbox"]
    out.write(
        f"outbox: {outbox['depth']} messages, {outbox['size_bytes']} of"
        f" {outbox['max_size_bytes']} bytes, {outbox['evicted_total']} evicted\n"
    )
    for lane, stats in outbox["lanes"].items():
        out.write(f"  {lane:<10} {stats['depth']:>8}  oldest {_age(stats['oldest_age_seconds'])}\n")
    _print_backfill(status.get("backfill"), out)
    inbox = status["inbox"]
    counts = ", ".join(f"{name} {count}" for name, count in inbox["counts"].items())
    out.write(
        f"inbox: {inbox['pending']} pending (oldest {_age(inbox['oldest_pending_age_seconds'])})"
        f"{'; ' + counts if counts else ''}\n"
    )
    out.write(f"dead letters: {status['dead_letters']}\n")


def _print_backfill(backfill: dict[str, Any] | None, out: IO[str]) -> None:
    """One line about the backlog of the last outage, when there was one."""
    if not backfill or backfill["state"] == "idle":
        return
    cut = f", {backfill['expired']} cut off" if backfill["expired"] else ""
    if backfill["state"] == "done":
        out.write(f"backfill: done, {backfill['sent']} of {backfill['total']} sent{cut}\n")
        return
    eta = backfill["eta_seconds"]
    out.write(
        f"backfill: draining, {backfill['sent']} of {backfill['total']} sent"
        f" ({100 * backfill['fraction_done']:.0f} %){cut}, {backfill['remaining']} left,"
        f" {backfill['rate_per_second']:.0f} msg/s, ETA {'unknown' if eta is None else _age(eta)}\n"
    )


def print_dead_letters(letters: list[dict[str, Any]], out: IO[str]) -> None:
    if not letters:
        out.write("no dead letters\n")
        return
    for letter in letters:
        out.write(
            f"{letter['id']:>6}  {letter['dead_at']}  {letter['reason_code']:<20}"
            f" {letter['message_id'] or '-'}  {letter['size_bytes']} bytes\n"
            f"{'':>6}  {letter['reason']}\n"
        )


# ---- buffer inspect ------------------------------------------------------------------------


def inspect_store(path: Path, out: IO[str]) -> None:
    """Counts, oldest age and bytes per lane, per-stream counts and last seq, inbox, archive."""
    store = inspection.inspect_store(path)
    out.write(
        f"store {path}: {store.file_bytes} bytes on disk, schema version {store.schema_version}\n"
    )
    out.write(f"outbox: {store.messages} messages, {store.evicted_total} evicted since created\n")
    for lane in store.lanes:
        age = _age(lane.oldest_age)
        out.write(
            f"  {lane.lane.name.lower():<10} {lane.messages:>8} messages"
            f" ({lane.inflight} in flight), {lane.size_bytes} bytes, oldest {age}\n"
        )
    out.write(f"streams: {len(store.streams)}\n")
    for stream in store.streams:
        since = f" from seq {stream.first_queued_seq}" if stream.queued else ""
        out.write(
            f"  {stream.stream:<40} last seq {stream.last_seq:>8}  waiting {stream.queued}{since}\n"
        )
    if store.inbox is not None:
        counts = store.inbox.counts.items()
        text = ", ".join(f"{status.name.lower()} {count}" for status, count in counts)
        out.write(f"inbox: {text}\ndead letters: {store.inbox.dead_letters}\n")
    if store.archive is not None:
        archive = store.archive
        out.write(
            f"sent archive: {archive.messages} messages, {archive.size_bytes} bytes,"
            f" oldest sent {_age(archive.oldest_age)} ago\n"
        )


# ---- text ----------------------------------------------------------------------------------


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else _duration(seconds)


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h {minutes} min"


def parse_since(text: str, now: datetime | None = None) -> float:
    """``--since``: RFC 3339 (``2026-11-25T06:00:00Z``) or a duration back from now (``2h``)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            back = TypeAdapter(Duration).validate_python(text)  # the config's duration syntax
        except ValidationError as exc:
            raise ValueError(
                f"{text!r} is neither a time (2026-11-25T06:00:00Z) nor a duration (2h)"
            ) from exc
        return (now or datetime.now(UTC)).timestamp() - back.total_seconds()
    if moment.tzinfo is None:
        raise ValueError(f"{text!r}: give a time zone (e.g. a trailing Z)")
    return moment.timestamp()


# ---- buffer replay -------------------------------------------------------------------------


class ProgressBar:
    """``\\r[####      ] 123/456`` on a terminal stream; one final newline from ``done``."""

    WIDTH = 30

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + " " * (self.WIDTH - filled)
        self._stream.write(f"\r[{bar}] {done}/{total}")
        self._stream.flush()
        self._drawn = True

    def done(self) -> None:
        if self._drawn:
            self._stream.write("\n")


async def replay_archive(
    config: AgentConfig, since: float, stream: str | None, progress: Callable[[int, int], None]
) -> tuple[int, int]:
    """Replay from the store ``config`` names; (replayed, found)."""
    database = await Database.open(config.store.path)
    try:
        return await replay(
            database,
            since=since,
            stream=stream,
            max_size_bytes=int(config.store.max_size),
            progress=progress,
        )
    finally:
        await database.close()


def print_timeline(config: AgentConfig, order_id: str, out: IO[str], *, as_json: bool) -> bool:
    """One order's timeline, as the API's ``/api/v1/orders/{id}/timeline`` answers it (the
    same view, scrubbed the same way); False when the store holds nothing about it."""
    from plantsync.buffer.history.timeline import read_timeline
    from plantsync.web.access import Scrubber
    from plantsync.web.orders.timeline import timeline_view

    found = read_timeline(config.store.path, order_id)
    if not found.known:
        return False
    view = timeline_view(found, Scrubber(config))
    if as_json:
        out.write(view.model_dump_json(indent=2) + "\n")
        return True
    order = view.order
    if order is None:
        out.write(f"order {order_id}: never applied at this plant\n")
    else:
        start = order.planned_start.isoformat(timespec="minutes") if order.planned_start else "-"
        out.write(
            f"order {order_id}: revision {order.revision}, {order.status}, work center"
            f" {order.work_center}, planned start {start}\n"
            f"  applied by {order.applied_by or '-'} (correlation {order.correlation_id or '-'})\n"
        )
    for event in view.events:
        arrow = "HQ -> plant" if event.direction == "down" else "plant -> HQ"
        revision = f"rev {event.revision}" if event.revision is not None else "rev -"
        when = event.settled_at or event.sent_at
        done = {"received": "settled", "sent": "hub took it"}.get(event.delivery, event.delivery)
        tail = f"{done} {when:%H:%M:%S}" if when else done
        out.write(
            f"{event.at:%Y-%m-%d %H:%M:%S}  {arrow}  {event.type or '?':<24} {revision:<7}"
            f" {event.summary}  [{tail}]  {event.message_id}"
            f"  corr {event.correlation_id or '-'}\n"
        )
        if event.reason:
            out.write(f"{'':>21}reason: {event.reason}\n")
    return True

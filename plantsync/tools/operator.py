"""Operator commands: the running agent's facts in a terminal, and its store read directly.

    plantsync status                      GET /api/v1/status of the running agent
    plantsync deadletter list|retry|discard  the API's dead-letter endpoints
    plantsync buffer inspect --config P   the store file, read-only (the agent may be running:
                                          WAL lets a reader in beside the writer)
    plantsync buffer replay --since T     archived messages back into the outbox, historical
                                          (``buffer/archive.py``); a second writer beside a
                                          running agent, serialised by SQLite's lock

Each API command takes ``--url`` (default http://127.0.0.1:8470) and ``--token-env`` (the name
of the environment variable holding the API token; the token never goes on a command line,
where ``ps`` would show it). An agent that does not answer is one clear line and exit 1.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import TypeAdapter, ValidationError

from plantsync.buffer.archive import replay
from plantsync.buffer.base import Lane, RowStatus
from plantsync.buffer.database import Database
from plantsync.buffer.inbox import InboxStatus
from plantsync.config.model import AgentConfig, Duration

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
    inbox = status["inbox"]
    counts = ", ".join(f"{name} {count}" for name, count in inbox["counts"].items())
    out.write(
        f"inbox: {inbox['pending']} pending (oldest {_age(inbox['oldest_pending_age_seconds'])})"
        f"{'; ' + counts if counts else ''}\n"
    )
    out.write(f"dead letters: {status['dead_letters']}\n")


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


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """The store file opened read-only: never written, whether the agent runs or not."""
    if not path.exists():
        raise FileNotFoundError(f"no store at {path}")
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
        connection.execute("PRAGMA busy_timeout = 5000")
        yield connection


def inspect_store(path: Path, out: IO[str]) -> None:
    """Counts, oldest age and bytes per lane, per-stream counts and last seq, inbox, archive."""
    now = time.time()
    with read_only(path) as connection:
        size = sum(
            sibling.stat().st_size
            for sibling in (path, path.with_name(path.name + "-wal"))
            if sibling.exists()
        )
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        out.write(f"store {path}: {size} bytes on disk, schema version {version}\n")
        _inspect_outbox(connection, now, out)
        _inspect_streams(connection, out)
        _inspect_inbox(connection, out)
        _inspect_archive(connection, now, out)


def _inspect_outbox(connection: sqlite3.Connection, now: float, out: IO[str]) -> None:
    rows = connection.execute(
        "SELECT lane, status, COUNT(*), MIN(created_at), COALESCE(SUM(size), 0)"
        " FROM outbox GROUP BY lane, status"
    ).fetchall()
    evicted = connection.execute("SELECT value FROM meta WHERE key = 'evicted_total'").fetchone()
    total = sum(count for _, _, count, _, _ in rows)
    out.write(f"outbox: {total} messages, {evicted[0] if evicted else 0} evicted since created\n")
    for lane in Lane:
        mine = [row for row in rows if row[0] == lane]
        count = sum(row[2] for row in mine)
        inflight = sum(row[2] for row in mine if row[1] == RowStatus.INFLIGHT)
        oldest = min((row[3] for row in mine), default=None)
        size = sum(row[4] for row in mine)
        age = _age(None if oldest is None else now - oldest)
        out.write(
            f"  {lane.name.lower():<10} {count:>8} messages ({inflight} in flight),"
            f" {size} bytes, oldest {age}\n"
        )


def _inspect_streams(connection: sqlite3.Connection, out: IO[str]) -> None:
    rows = connection.execute(
        "SELECT s.stream, s.last_seq, COUNT(o.id), MIN(o.seq) FROM streams AS s"
        " LEFT JOIN outbox AS o ON o.stream = s.stream GROUP BY s.stream ORDER BY s.stream"
    ).fetchall()
    out.write(f"streams: {len(rows)}\n")
    for stream, last_seq, waiting, first_waiting in rows:
        since = f" from seq {first_waiting}" if waiting else ""
        out.write(f"  {stream:<40} last seq {last_seq:>8}  waiting {waiting}{since}\n")


def _inspect_inbox(connection: sqlite3.Connection, out: IO[str]) -> None:
    if not _has_table(connection, "inbox"):
        return
    counts = dict(connection.execute("SELECT status, COUNT(*) FROM inbox GROUP BY status"))
    text = ", ".join(f"{status.name.lower()} {counts.get(status, 0)}" for status in InboxStatus)
    dead = connection.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    out.write(f"inbox: {text}\ndead letters: {dead}\n")


def _inspect_archive(connection: sqlite3.Connection, now: float, out: IO[str]) -> None:
    if not _has_table(connection, "sent_archive"):
        return
    count, oldest, size = connection.execute(
        "SELECT COUNT(*), MIN(sent_at), COALESCE(SUM(size), 0) FROM sent_archive"
    ).fetchone()
    age = _age(None if oldest is None else now - oldest)
    out.write(f"sent archive: {count} messages, {size} bytes, oldest sent {age} ago\n")


def _has_table(connection: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
    return connection.execute(query, (name,)).fetchone() is not None


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

"""Corrupt store files are moved aside, never deleted, so the agent can start on a fresh store.

    store.db  store.db-wal  store.db-shm
        ──rename──▶  store.db.corrupt-20250101T120000Z  (…-wal, …-shm beside it)

A store that is not a database, is truncated, or fails ``PRAGMA quick_check`` cannot be
repaired by the agent, and refusing to start would stop the plant's sync until someone
comes. So ``database.Database.open`` (when asked to) moves the file and its WAL siblings aside
in the same directory, one atomic rename each, and opens a fresh store. The WAL goes with its
database: left behind, SQLite would replay it into the fresh file. The quarantined files keep
their owner-only mode (they hold payloads) and stay until plant IT inspects and removes them;
``quarantined_files`` finds them, so the alarm lasts exactly as long as they are there.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

SIBLING_SUFFIXES = ("", "-wal", "-shm")
"""The database file and the files SQLite keeps beside it in WAL mode."""

_MARK = ".corrupt-"
_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True, slots=True)
class Quarantine:
    """One store file moved aside at start-up: where from, where to, and why."""

    original: Path
    moved_to: Path
    reason: str
    at: datetime


def is_corruption(error: sqlite3.Error) -> bool:
    """True for "malformed" and "not a database"; never for I/O, locking or disk-full errors,
    which say nothing about the file's content and must not cost the store."""
    return getattr(error, "sqlite_errorcode", 0) & 0xFF in _CORRUPTION_CODES


def quarantine(path: Path, reason: str, now: datetime | None = None) -> Quarantine:
    """Move ``path`` and its -wal/-shm siblings to ``<name>.corrupt-<UTC time>``; log why."""
    at = now or datetime.now(UTC)
    target = _free_name(path, at)
    for suffix in SIBLING_SUFFIXES:
        source = path.with_name(path.name + suffix)
        if source.exists():
            moved = target.with_name(target.name + suffix)
            os.rename(source, moved)
            moved.chmod(0o600)
    _sync_directory(path.parent)
    log.error(
        "store %s is corrupt (%s): moved to %s, starting on a fresh store;"
        " inspect the quarantined file, then delete it to clear the alarm",
        path,
        reason,
        target,
    )
    return Quarantine(path, target, reason, at)


def quarantined_files(path: Path) -> list[Path]:
    """The quarantined copies of the store at ``path`` still on disk, oldest first."""
    prefix = path.name + _MARK
    try:
        names = sorted(entry.name for entry in os.scandir(path.parent))
    except OSError:
        return []
    return [
        path.with_name(name)
        for name in names
        if name.startswith(prefix) and not name.endswith(("-wal", "-shm"))
    ]


def _free_name(path: Path, at: datetime) -> Path:
    """``<name>.corrupt-<stamp>``, with a counter when that name is taken (two in a second)."""
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    candidate = path.with_name(f"{path.name}{_MARK}{stamp}")
    counter = 1
    while any(candidate.with_name(candidate.name + s).exists() for s in SIBLING_SUFFIXES):
        counter += 1
        candidate = path.with_name(f"{path.name}{_MARK}{stamp}-{counter}")
    return candidate


def _sync_directory(directory: Path) -> None:
    """Make the renames durable: a power cut must not bring the corrupt file back."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

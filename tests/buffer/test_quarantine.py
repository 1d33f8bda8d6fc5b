"""A corrupt store at start-up is moved aside, never deleted, and a fresh store is opened.

Each case is a real damaged file: random bytes, a real store cut in half, and a real store
whose header is intact but whose pages after the first are overwritten with garbage.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from plantsync.buffer.quarantine import quarantined_files
from plantsync.buffer.store import Store
from plantsync.errors import CorruptStore
from tests.buffer.harness import make_record

ROOMY = 10**8
PAGE = 4096


async def _real_store(path: Path) -> None:
    """A store with enough rows to span many pages, closed cleanly (WAL folded in)."""
    async with await Store.open(path, max_size_bytes=ROOMY) as store:
        await store.outbox.add([make_record(n, payload_size=500) for n in range(1, 400)])


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(64 * 1024))


def _truncated(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _garbage_pages(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(PAGE)  # keep page 1: the header still says "SQLite format 3"
        file.write(random.Random(2).randbytes(size - PAGE))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "garbage bytes": _garbage,
    "a truncated store": _truncated,
    "a good header with garbage pages": _garbage_pages,
}


@pytest.mark.parametrize("damage", list(DAMAGES), ids=list(DAMAGES))
async def test_a_corrupt_store_is_quarantined_and_a_fresh_one_opened(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.db"
    await _real_store(path)
    DAMAGES[damage](path)
    damaged = path.read_bytes()

    with caplog.at_level(logging.ERROR):
        store = await Store.open(path, max_size_bytes=ROOMY, on_corrupt="quarantine")
    async with store:
        assert (await store.outbox.stats()).depth == 0
        await store.outbox.add([make_record(1)])
        quarantine = store.health.quarantine

    assert quarantine is not None
    assert quarantine.moved_to.parent == tmp_path
    assert quarantine.moved_to.name.startswith("store.db.corrupt-")
    assert quarantine.moved_to.read_bytes() == damaged  # moved, never deleted or rewritten
    assert stat.S_IMODE(quarantine.moved_to.stat().st_mode) == 0o600
    assert quarantined_files(path) == [quarantine.moved_to]
    message = caplog.records[-1].getMessage()
    for named in (str(path), str(quarantine.moved_to), "corrupt", quarantine.reason):
        assert named in message


async def test_a_corrupt_store_s_wal_is_kept_with_it_and_not_replayed_into_the_fresh_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.db"
    await _real_store(path)
    _crash_with_uncheckpointed_frames(path, b"FRAME-ONLY-IN-THE-WAL")
    _garbage_pages(path)

    async with await Store.open(path, max_size_bytes=ROOMY, on_corrupt="quarantine") as store:
        quarantine = store.health.quarantine
        assert (await store.outbox.stats()).depth == 0

    assert quarantine is not None
    kept = _quarantined(tmp_path)
    # SQLite may fold the WAL into the quarantined file when it closes it; either way the
    # frames are kept beside it, owner-only, and never reach the fresh store.
    assert b"FRAME-ONLY-IN-THE-WAL" in b"".join(file.read_bytes() for file in kept)
    assert b"FRAME-ONLY-IN-THE-WAL" not in path.read_bytes()
    assert {stat.S_IMODE(file.stat().st_mode) for file in kept} == {0o600}


def _quarantined(directory: Path) -> list[Path]:
    """Every quarantined file, -wal and -shm included."""
    return [file for file in directory.iterdir() if file.name.startswith("store.db.corrupt")]


def _crash_with_uncheckpointed_frames(path: Path, marker: bytes) -> None:
    """Leave committed rows only in the -wal, as a power cut after COMMIT would."""
    snapshot = path.with_name("snapshot")
    snapshot.mkdir()
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute(
        "INSERT INTO dead_letters (topic, payload, reason_code, reason, received_at,"
        " dead_at) VALUES ('t', ?, 'x', 'x', 0, 0)",
        (marker * 50,),
    )
    for suffix in ("", "-wal"):
        (snapshot / (path.name + suffix)).write_bytes(
            path.with_name(path.name + suffix).read_bytes()
        )
    writer.close()
    for suffix in ("", "-wal"):
        source = snapshot / (path.name + suffix)
        source.replace(path.with_name(path.name + suffix))
    path.with_name(path.name + "-shm").unlink(missing_ok=True)
    snapshot.rmdir()


async def test_two_quarantines_in_the_same_second_keep_both_files(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    for content in (b"first broken file " * 100, b"second broken file " * 100):
        path.write_bytes(content)
        async with await Store.open(path, max_size_bytes=ROOMY, on_corrupt="quarantine"):
            pass

    kept = {file.read_bytes()[:6] for file in quarantined_files(path)}
    assert kept == {b"first ", b"second"}


async def test_by_default_a_corrupt_store_raises_and_stays_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await _real_store(path)
    _garbage_pages(path)

    with pytest.raises(CorruptStore, match="corrupt"):
        await Store.open(path, max_size_bytes=ROOMY)

    assert quarantined_files(path) == []
    assert path.exists()


async def test_a_sound_store_is_never_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await _real_store(path)

    async with await Store.open(path, max_size_bytes=ROOMY, on_corrupt="quarantine") as store:
        assert store.health.quarantine is None
        assert (await store.outbox.stats()).depth == 399


async def test_a_locked_store_is_an_error_not_corruption(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    await _real_store(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as holder:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(Exception) as raised:  # noqa: PT011 - any refusal, never a move
            await Store.open(path, max_size_bytes=ROOMY, on_corrupt="quarantine")
        holder.execute("ROLLBACK")
    assert not isinstance(raised.value, CorruptStore)
    assert quarantined_files(path) == []

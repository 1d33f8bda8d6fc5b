"""Idempotency keys: a request from the plant committed once, and its answer kept for retries.

    add_once(request, build, reply)
        BEGIN IMMEDIATE
          SELECT the key's row ─▶ found: return it (nothing written; the caller replays it)
          build() ─▶ outbox.add_in(record)            the message for HQ
          INSERT the key, the request, its hash, the message id and the answer
        COMMIT

The key check, the outbox row and the key's record are one transaction: a crash before the
COMMIT keeps neither (the client's retry is the first attempt), a crash after it keeps both
(the retry gets the kept answer). Rows are unique by (kind, key): ``kind`` names the way in
(``api:confirmation``, ``api:order-status``, ``plant:confirmation``), so one client's key
cannot answer for another endpoint. Retention (``retention.py``) deletes keys older than
``store.keep_idempotency_keys``; a retry after that is a new request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from plantsync.buffer.base import Record
from plantsync.buffer.database import Database
from plantsync.buffer.sqlite import SqliteOutbox

_FIND = (
    "SELECT kind, key, request_hash, request, message_id, status, body, created_at"
    " FROM idempotency_keys WHERE kind = ? AND key = ?"
)
_INSERT = (
    "INSERT INTO idempotency_keys (kind, key, request_hash, request, message_id, status, body,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING counted"
)
_COUNT = "SELECT COUNT(*) FROM idempotency_keys"

Reply = Callable[[str], tuple[int, bytes]]
"""The answer its client is given for a message id (HTTP status, body): kept with the key, so
a retry is answered byte for byte the same, also after a restart."""


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """One request under a client's key: the way it came in, the key, its content."""

    kind: str
    key: str
    request: bytes
    """The request's content in a canonical form (the model's JSON), compared on a retry."""

    @property
    def request_hash(self) -> str:
        return hashlib.sha256(self.request).hexdigest()


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """What the first request under a key was, and what it was answered."""

    kind: str
    key: str
    request_hash: str
    request: bytes
    message_id: str
    status: int | None
    """The answer's status; None for a way in nobody waits on an answer (plant events)."""
    body: bytes | None
    created_at: float

    def same_request(self, request: KeyedRequest) -> bool:
        return self.request_hash == request.request_hash


class IdempotencyKeys:
    """The ``idempotency_keys`` table; ``Store.open`` builds it beside the outbox it writes to."""

    def __init__(
        self, database: Database, outbox: SqliteOutbox, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._database, self._outbox, self._clock = database, outbox, clock

    async def add_once(
        self, request: KeyedRequest, build: Callable[[], Record], reply: Reply | None = None
    ) -> KeptAnswer | None:
        """Commit ``build()``'s record and the key with ``reply``'s answer, in one transaction,
        unless the key is kept already: then return what it keeps and write nothing.

        ``build`` runs only for a first request, inside the transaction (it may take sequence
        numbers). The key's row counts toward the store's cap (``room/held.py``). Raises
        ``StoreFull`` (nothing committed, the key not kept) like ``Outbox.add``."""
        async with self._database.write() as transaction:
            connection = transaction.connection
            rows = list(await connection.execute_fetchall(_FIND, (request.kind, request.key)))
            if rows:
                return _kept(rows[0])
            record = build()
            status, body = reply(record.message_id) if reply is not None else (None, None)
            key = (request.kind, request.key, request.request_hash, request.request)
            answer = (record.message_id, status, body, self._clock())
            ((counted,),) = await connection.execute_fetchall(_INSERT, (*key, *answer))
            # The key counts toward the cap like the message: both fit, or neither is kept.
            held = self._outbox.held.plus(keys=int(counted))
            await self._outbox.add_in(transaction, [record], held=held)
        return None

    async def find(self, kind: str, key: str) -> KeptAnswer | None:
        """The answer kept for ``key`` of ``kind``, if any."""
        async with self._database.read() as connection:
            rows = list(await connection.execute_fetchall(_FIND, (kind, key)))
        return _kept(rows[0]) if rows else None

    async def count(self) -> int:
        """How many keys are kept."""
        async with self._database.read() as connection:
            ((count,),) = await connection.execute_fetchall(_COUNT)
        return int(count)


def _kept(row: Iterable[Any]) -> KeptAnswer:
    kind, key, request_hash, request, message_id, status, body, created_at = row
    return KeptAnswer(
        str(kind),
        str(key),
        str(request_hash),
        bytes(request),
        str(message_id),
        None if status is None else int(status),
        None if body is None else bytes(body),
        float(created_at),
    )

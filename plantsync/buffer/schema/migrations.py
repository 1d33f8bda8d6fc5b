"""The store's schema, version by version: ``MIGRATIONS`` lists (version, statements), and
``database.Database.open`` runs every step a file has not seen yet, in order, inside one
transaction. A step is never edited once released: a change is a new step at the end."""

from __future__ import annotations

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration"]

Migration = tuple[int, tuple[str, ...]]
"""A schema version and the statements that bring the previous version to it."""

MIGRATIONS: tuple[Migration, ...] = (
    (
        1,  # the outbox
        (
            "CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, lane INTEGER NOT NULL,"
            " status INTEGER NOT NULL, message_id TEXT NOT NULL, stream TEXT NOT NULL,"
            " seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " size INTEGER NOT NULL, created_at REAL NOT NULL)",
            "CREATE INDEX outbox_claim ON outbox (lane, status, id)",
            "CREATE TABLE streams (stream TEXT PRIMARY KEY, last_seq INTEGER NOT NULL)",
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
            "INSERT INTO meta (key, value) VALUES ('evicted_total', 0)",
            "PRAGMA user_version = 1",
        ),
    ),
    (
        2,  # the inbox, its dedupe horizon, dead letters, the last-known-good schedule
        (
            "CREATE TABLE inbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " message_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " received_at REAL NOT NULL, seq INTEGER, order_ids TEXT NOT NULL,"
            " status INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, reason TEXT,"
            " retry_at REAL, updated_at REAL NOT NULL)",
            "CREATE INDEX inbox_status ON inbox (status, id)",
            "CREATE TABLE seen_ids (message_id TEXT PRIMARY KEY, seen_at REAL NOT NULL)"
            " WITHOUT ROWID",
            "CREATE INDEX seen_ids_age ON seen_ids (seen_at)",
            "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL, reason_code TEXT NOT NULL,"
            " reason TEXT NOT NULL, received_at REAL NOT NULL, dead_at REAL NOT NULL)",
            "CREATE TABLE orders (order_id TEXT PRIMARY KEY, revision INTEGER NOT NULL,"
            " work_center TEXT NOT NULL, status TEXT NOT NULL, planned_start TEXT,"
            " order_json BLOB NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX orders_schedule ON orders (work_center, planned_start, order_id)",
            "PRAGMA user_version = 2",
        ),
    ),
    (
        3,  # the sent archive (``archive.py``): acknowledged rows kept a while for replay
        (
            "CREATE TABLE sent_archive (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " lane INTEGER NOT NULL, message_id TEXT NOT NULL, stream TEXT NOT NULL,"
            " seq INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " size INTEGER NOT NULL, created_at REAL NOT NULL, sent_at REAL NOT NULL)",
            "CREATE INDEX sent_archive_age ON sent_archive (sent_at)",
            "PRAGMA user_version = 3",
        ),
    ),
    (
        4,  # which down message last applied each order, and its correlation id (``OrderState``)
        (
            "ALTER TABLE orders ADD COLUMN correlation_id TEXT",
            "ALTER TABLE orders ADD COLUMN message_id TEXT",
            "PRAGMA user_version = 4",
        ),
    ),
    (
        5,  # retention (``retention.py``): find what is old enough to prune without a scan
        (
            "CREATE INDEX inbox_settled_age ON inbox (status, updated_at)",
            "CREATE INDEX dead_letters_age ON dead_letters (dead_at)",
            "PRAGMA user_version = 5",
        ),
    ),
    (
        6,  # idempotency keys (``buffer/idempotency``); a dead letter's whole size and hash
        (
            "CREATE TABLE idempotency_keys (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " kind TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,"
            " request BLOB NOT NULL, message_id TEXT NOT NULL, status INTEGER, body BLOB,"
            " created_at REAL NOT NULL, UNIQUE (kind, key))",
            "CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at)",
            "ALTER TABLE dead_letters ADD COLUMN size INTEGER",
            "ALTER TABLE dead_letters ADD COLUMN sha256 TEXT",
            "PRAGMA user_version = 6",
        ),
    ),
    (
        7,  # the cursors of the polled MES endpoints (``polling/cursors.py``)
        (
            "CREATE TABLE poll_cursors (endpoint TEXT PRIMARY KEY, cursor TEXT, etag TEXT,"
            " last_modified TEXT, updated_at REAL NOT NULL) WITHOUT ROWID",
            "PRAGMA user_version = 7",
        ),
    ),
    (
        8,  # room at the cap (``room/held.py``): what a dead letter and a key count; retention
        # of orders closed at HQ (cancelled) or at the plant (ended, aborted, final confirmed)
        (
            "ALTER TABLE dead_letters ADD COLUMN counted INTEGER GENERATED ALWAYS AS"
            " (length(payload) + length(topic) + length(reason) + 64) VIRTUAL",
            "ALTER TABLE idempotency_keys ADD COLUMN counted INTEGER GENERATED ALWAYS AS"
            " (2 * (length(kind) + length(key)) + length(request_hash) + length(request)"
            " + length(message_id) + COALESCE(length(body), 0) + 96) VIRTUAL",
            "ALTER TABLE orders ADD COLUMN closed_at REAL",
            "UPDATE orders SET closed_at = updated_at WHERE status = 'Cancelled'",
            "CREATE INDEX orders_closed ON orders (closed_at) WHERE closed_at IS NOT NULL",
            "PRAGMA user_version = 8",
        ),
    ),
    (
        9,  # each source tag's last value received live and the gaps to backfill (``gaps/``)
        (
            "CREATE TABLE tag_marks (link TEXT NOT NULL, machine_id TEXT NOT NULL,"
            " tag TEXT NOT NULL, source_us INTEGER NOT NULL, updated_at REAL NOT NULL,"
            " PRIMARY KEY (link, machine_id, tag)) WITHOUT ROWID",
            "CREATE TABLE source_gaps (id INTEGER PRIMARY KEY, link TEXT NOT NULL,"
            " machine_id TEXT NOT NULL, tag TEXT NOT NULL, start_us INTEGER NOT NULL,"
            " end_us INTEGER NOT NULL, reason TEXT NOT NULL, created_at REAL NOT NULL)",
            "CREATE INDEX source_gaps_link ON source_gaps (link, id)",
            "PRAGMA user_version = 9",
        ),
    ),
    (
        10,  # the link that applies an inbox row (``alarm.ack``: its OPC UA server); NULL: the
        # plant system that takes the schedule
        (
            "ALTER TABLE inbox ADD COLUMN target TEXT",
            "CREATE INDEX inbox_target ON inbox (target, status, id)",
            "PRAGMA user_version = 10",
        ),
    ),
    (
        11,  # the oldest row of a lane by a seek, not a scan of the outbox (``stats``)
        (
            "CREATE INDEX outbox_age ON outbox (lane, created_at)",
            "PRAGMA user_version = 11",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]
"""``PRAGMA user_version`` of a store this code writes; older stores are migrated forward."""

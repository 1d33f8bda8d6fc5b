"""The outbox back-end's statements (``sqlite.SqliteOutbox``), beside the schema they read:
the tables and indexes they rely on are made in ``migrations.py``."""

INSERT = (
    "INSERT INTO outbox (lane, status, message_id, stream, seq, topic, payload, size, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_STREAM = (
    "INSERT INTO streams (stream, last_seq) VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)"
)
ADD_EVICTED = "UPDATE meta SET value = value + ? WHERE key = 'evicted_total'"
NEXT_OF_LANE = (
    "SELECT id, lane, message_id, stream, seq, topic, payload, created_at FROM outbox"
    " WHERE lane = ? AND status = ? AND id > ? ORDER BY id LIMIT ?"
)
NEXT_OF_BOTH = (  # one await for both lanes: the common case of begin()
    "SELECT * FROM (SELECT id, lane, message_id, stream, seq, topic, payload, created_at"
    " FROM outbox WHERE lane = ? AND status = ? AND id > ? ORDER BY id LIMIT ?)"
    " UNION ALL"
    " SELECT * FROM (SELECT id, lane, message_id, stream, seq, topic, payload, created_at"
    " FROM outbox WHERE lane = ? AND status = ? AND id > ? ORDER BY id LIMIT ?)"
)
BACKLOG_SPLIT = "SELECT MAX(id), COUNT(*) FROM outbox WHERE lane = ?"
BACKLOG_OLDEST = (
    "SELECT id, lane, message_id, stream, seq, topic, payload, created_at FROM outbox"
    " WHERE lane = ? AND status = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?"
)
BACKLOG_NEWEST = (
    "SELECT id, lane, message_id, stream, seq, topic, payload, created_at FROM outbox"
    " WHERE lane = ? AND status = ? AND id < ? ORDER BY id DESC LIMIT ?"
)
EXPIRE_BACKLOG = (
    "DELETE FROM outbox WHERE lane = ? AND id <= ? AND created_at < ?"
    " AND id NOT IN (SELECT value FROM json_each(?)) RETURNING size"
)
ROWS_OF_IDS = (
    "SELECT id, lane, message_id, stream, seq, topic, payload, created_at FROM outbox"
    " WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id"
)
DELETE_IDS = "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?)) RETURNING size, lane"
DELETE_IDS_ARCHIVED = (
    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?))"
    " RETURNING id, lane, message_id, stream, seq, topic, payload, size, created_at"
)
RELEASE_ALL = "UPDATE outbox SET status = ? WHERE status = ?"
TOTALS = (
    "SELECT (SELECT COALESCE(SUM(size), 0) FROM outbox),"
    " (SELECT value FROM meta WHERE key = 'evicted_total')"
)
DEPTHS = "SELECT lane, COUNT(*) FROM outbox GROUP BY lane"
OLDEST_OF_LANE = "SELECT ?, MIN(created_at) FROM outbox WHERE lane = ?"  # index outbox_age

"""The durable store: outbox (up); inbox, dead letters and last-known-good schedule follow."""

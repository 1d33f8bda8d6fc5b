"""A source link's session: its readings, and beside them its alarms, HQ's acknowledgements of
them and the history backfill."""

from plantsync.agent.sourcing.acks import AlarmAcks, ack_rules
from plantsync.agent.sourcing.beside import run_beside
from plantsync.agent.sourcing.session import gap_aware_pipeline, source_session

__all__ = ["AlarmAcks", "ack_rules", "gap_aware_pipeline", "run_beside", "source_session"]

"""A source link's session: its readings, and beside them its alarms and history backfill."""

from plantsync.agent.sourcing.beside import run_beside
from plantsync.agent.sourcing.session import gap_aware_pipeline, source_session

__all__ = ["gap_aware_pipeline", "run_beside", "source_session"]

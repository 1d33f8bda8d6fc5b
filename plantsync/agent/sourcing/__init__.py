"""A source link's session: its readings, and beside them its alarms and history backfill."""

from plantsync.agent.sourcing.beside import run_beside
from plantsync.agent.sourcing.session import source_session

__all__ = ["run_beside", "source_session"]

"""What runs beside a source's readings in the same session: alarms and history backfill."""

from plantsync.agent.sourcing.beside import run_beside

__all__ = ["run_beside"]

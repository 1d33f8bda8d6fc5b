"""Progress people can see: the backfill after an outage, for the API, the page and /metrics."""

from plantsync.web.progress.backfill import (
    BackfillView,
    backfill_card,
    backfill_metrics,
    backfill_view,
)

__all__ = ["BackfillView", "backfill_card", "backfill_metrics", "backfill_view"]

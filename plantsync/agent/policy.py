"""Sync what matters: which schedule changes wait for a plant planner's approval.

A change waits when it touches the frozen horizon (the order starts, or would start, within
``frozen_horizon`` from now) or changes the quantity by more than ``quantity_threshold``
percent. New orders (a release of an order the plant does not have) and quality holds and
their releases never wait: a hold must take effect at once, and a new order disturbs nothing
that runs. Every decision is recorded with the message and acknowledged to HQ.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from plantsync.contracts.schedule import ProductionOrder

APPROVED = "approved"
"""The reason an inbox row carries once a planner approved it: the policy is not asked again."""

NEVER_WAITS = frozenset({"order.hold", "order.hold-release", "schedule.snapshot"})


@dataclass(frozen=True)
class SchedulePolicy:
    frozen_horizon: timedelta
    quantity_threshold: Decimal
    """Percent of the applied quantity; a larger change waits for approval."""

    def reason_to_wait(
        self,
        change_type: str,
        current: ProductionOrder | None,
        proposed: ProductionOrder | None,
        now: datetime,
    ) -> str | None:
        """Why this change needs a planner's approval, or None to apply it now."""
        if change_type in NEVER_WAITS or current is None:
            return None
        horizon = now + self.frozen_horizon
        starts = [current.planned_start] + ([proposed.planned_start] if proposed else [])
        if min(starts) <= horizon:
            return f"order {current.order_id} starts within the frozen horizon"
        if proposed is not None and self._quantity_jump(current, proposed):
            return f"order {current.order_id} quantity changes by more than the threshold"
        return None

    def _quantity_jump(self, current: ProductionOrder, proposed: ProductionOrder) -> bool:
        before, after = current.quantity.value, proposed.quantity.value
        if current.quantity.unit != proposed.quantity.unit:
            return True
        return abs(after - before) * 100 > self.quantity_threshold * before

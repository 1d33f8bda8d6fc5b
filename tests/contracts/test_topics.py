"""The topic tree of one site, including the order levels that come from HQ's ids."""

from __future__ import annotations

import pytest

from plantsync.contracts import Topics

TOPICS = Topics("plantsync/v1", "plant-01")


def test_every_business_topic_is_under_the_sites_subtree() -> None:
    assert TOPICS.down_schedule == "plantsync/v1/plant-01/down/schedule"
    assert TOPICS.ack == "plantsync/v1/plant-01/up/ack"
    assert TOPICS.order_status("JO-4711") == "plantsync/v1/plant-01/up/order/JO-4711/status"
    assert TOPICS.confirmation("JO-4711") == "plantsync/v1/plant-01/up/order/JO-4711/confirmation"
    assert TOPICS.resync == "plantsync/v1/plant-01/up/resync"


@pytest.mark.parametrize("order_id", ["a/b", "+", "#", "a b", "", "..", "x" * 129])
def test_order_ids_that_are_not_one_topic_level_are_refused(order_id: str) -> None:
    with pytest.raises(ValueError, match="cannot be a topic level"):
        TOPICS.order_status(order_id)
    with pytest.raises(ValueError, match="cannot be a topic level"):
        TOPICS.confirmation(order_id)

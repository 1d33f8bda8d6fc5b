"""Two HQ systems disagreeing about one order revision, through a real Mosquitto: the second
version is rejected as a conflict naming the fields that differ, the applied one stays, and the
conflict is counted on /metrics, in the status API and on the status page."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from plantsync.tools.localbroker import Mosquitto
from tests.e2e.hq import Hq, acks, order, outcomes
from tests.e2e.support import eventually, recording, running_agent
from tests.e2e.test_business_loop import business_config
from tests.fixtures.mes import MesServer

pytestmark = pytest.mark.slow


async def test_the_applied_revision_with_other_content_is_a_conflict_and_the_applied_one_stays(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        first = order("JO-1", 3, quantity="100")
        applied = await hq.release(first)
        await hub.wait_for(lambda: "applied" in outcomes(hub, applied["id"]), within=30)
        other = {**first, "quantity": {"value": "120", "unit": "pcs"}, "work_center": "line-2"}
        conflicting = hq.message("schedule.revision", {"orders": [other]})
        await hq.publish(conflicting)
        await hub.wait_for(lambda: "rejected" in outcomes(hub, conflicting["id"]), within=30)
        assert agent.store is not None
        kept = await agent.store.inbox.order("JO-1")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{agent.api_port}") as api:
            metrics = (await api.get("/metrics")).text
            status = (await api.get("/api/v1/status")).json()
            page = (await api.get("/")).text

    ack = acks(hub, conflicting["id"])[-1]
    assert ack["reason_code"] == "conflict"
    assert "conflict" in ack["reason"]
    assert "quantity.value" in ack["reason"]
    assert "work_center" in ack["reason"]
    assert "planned_start" not in ack["reason"]
    assert ack["orders"] == [{"order_id": "JO-1", "revision": 3}]
    assert kept is not None
    assert (kept.revision, kept.work_center, kept.message_id) == (3, "line-1", applied["id"])
    assert mes_server.state.applied_orders() == [("JO-1", 3)]
    assert "plantsync_schedule_conflicts_total 1.0" in metrics
    assert status["downlink"]["conflicts"] == 1
    assert "1 revision conflict(s) since start" in page


async def test_the_applied_revision_with_the_same_content_is_no_conflict(
    broker: Mosquitto, mes_server: MesServer, tmp_path: Path
) -> None:
    """Another message, the same order at the same revision, written differently ("100.000"
    for "100", the start in another time zone): the existing resend path, applied without
    reaching the MES again."""
    config = business_config(tmp_path / "store.db", broker, mes_server)
    hq = Hq(broker.url)
    first = order("JO-1", 2, quantity="100")
    start = datetime.fromisoformat(first["planned_start"]).astimezone(timezone(timedelta(hours=2)))
    again = {
        **first,
        "quantity": {"value": "100.000", "unit": "pcs"},
        "planned_start": start.isoformat(),
    }
    async with recording(broker.url) as hub, running_agent(config) as agent:
        await eventually(lambda: agent.health["hub"].connects >= 1, within=20)
        applied = await hq.release(first)
        await hub.wait_for(lambda: "applied" in outcomes(hub, applied["id"]), within=30)
        resent = hq.message("schedule.revision", {"orders": [again]})
        await hq.publish(resent)
        await hub.wait_for(lambda: "applied" in outcomes(hub, resent["id"]), within=30)
        conflicts = agent.downlink.counters.conflicts if agent.downlink else None

    assert outcomes(hub, resent["id"]) == ["accepted", "applied"]
    assert conflicts == 0
    assert mes_server.state.requests == 1

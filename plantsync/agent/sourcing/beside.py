"""What runs beside a source's readings, in the same session (it ends with the link):

    AlarmSource.alarms() ───────────▶ BusinessWriter.alarm   (business lane, never evicted)
    AlarmAcks.run ──────────────────▶ AlarmAcknowledger.acknowledge  (HQ's alarm.ack, ``acks.py``)
    GapKeeper.pending(link) ─▶ HistorySource.history(gaps) ─▶ Pipeline.submit (historical,
                                                               paced by the keeper's bucket)
                                                          └──▶ BusinessWriter.gap (what no
                                                               history could fill)
                            ─▶ Pipeline.settle(the gaps)   once all of them are committed
    … then waits for the next gap a commit opens (an Overflow), for as long as the session

The gaps are durable (``agent/backfill/gaps.py``): one left when the link drops again, or the
agent stops, is read on from the last value committed after the next connect. A gap's
history.gap report is committed before the gap is settled: a crash between the two reports
it once more after the restart (reports are at least once; the values exactly once).
"""

from __future__ import annotations

import asyncio

from plantsync.agent.backfill.gaps import GapKeeper
from plantsync.agent.business import BusinessWriter
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sourcing.acks import AlarmAcks
from plantsync.agent.supervisor import first_completed
from plantsync.contracts import machine_stream
from plantsync.contracts.machine import HistoryGap
from plantsync.drivers.base import AlarmAcknowledger, AlarmSource, HistorySource, Source
from plantsync.drivers.base import HistoryGap as Missing
from plantsync.errors import SourceUnavailable, StoreFull


async def run_beside(
    name: str, source: Source, pipeline: Pipeline, business: BusinessWriter, acks: AlarmAcks
) -> None:
    """Alarms and HQ's acks of them until the session ends; beside them, the backfill of the
    link's gaps."""
    alarms = _alarms(name, source, business) if isinstance(source, AlarmSource) else _idle()
    if isinstance(source, AlarmAcknowledger):
        alarms = first_completed(alarms, acks.run(name, source))
    gaps = pipeline.gaps
    history = (
        _backfill(name, source, pipeline, business, gaps)
        if isinstance(source, HistorySource) and gaps is not None and gaps.backfills(name)
        else _idle()
    )
    await first_completed(alarms, history)


async def _alarms(name: str, source: AlarmSource, business: BusinessWriter) -> None:
    """Every alarm into the outbox's business lane. When the outbox refuses it (full of
    business messages), the session ends: the reconnect's ConditionRefresh reports every
    retained condition again, so the current state reaches HQ once the outbox drains."""
    async for alarm in source.alarms():
        try:
            await business.alarm(alarm, source=name)
        except StoreFull as exc:
            raise SourceUnavailable(f"{name}: the outbox refused an alarm: {exc}") from exc


async def _backfill(
    name: str,
    source: HistorySource,
    pipeline: Pipeline,
    business: BusinessWriter,
    gaps: GapKeeper,
) -> None:
    """The link's gaps, as they open, for as long as the session lasts. A gap this session
    read and could not settle (the store refused a commit) waits for the next session."""
    tried: set[int] = set()
    while True:
        todo = [gap for gap in await gaps.pending(name) if gap.id not in tried]
        if not todo:
            await gaps.wait_opened(name)
            continue
        tried.update(gap.id for gap in todo)
        gaps.filling(name, todo)
        wanted = [Missing(g.machine_id, g.tag, g.start, g.end, g.reason) for g in todo]
        async for found in source.history(wanted):
            if isinstance(found, list):
                await gaps.pace(len({reading.machine_id for reading in found}))
                await pipeline.submit(name, found)
            else:
                await _report(name, found, business)
        await pipeline.settle(name, [gap.id for gap in todo])


async def _report(name: str, found: Missing, business: BusinessWriter) -> None:
    gap = HistoryGap(
        stream=machine_stream(found.machine_id),
        machine_id=found.machine_id,
        tag=found.tag,
        start=found.start,
        end=found.end,
        reason=found.reason[:200],
    )
    try:
        await business.gap(gap, source=name)
    except StoreFull as exc:
        raise SourceUnavailable(f"{name}: the outbox refused a gap report: {exc}") from exc


async def _idle() -> None:
    await asyncio.Event().wait()

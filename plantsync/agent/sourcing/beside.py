"""What runs beside a source's readings, in the same session (it ends with the link):

    AlarmSource.alarms() ───────────▶ BusinessWriter.alarm   (business lane, never evicted)
    AlarmAcks.run ──────────────────▶ AlarmAcknowledger.acknowledge  (HQ's alarm.ack, ``acks.py``)
    HistorySource.history(since) ───▶ Pipeline.submit         (historical readings)
                                 └──▶ BusinessWriter.gap      (what no history could fill)

``since`` is where the link's gap began, per tag: the source time of the last value the
pipeline received live from this link before the session (``Pipeline.last_times``). A first
session has none, so nothing is backfilled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from plantsync.agent.business import BusinessWriter
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.sourcing.acks import AlarmAcks
from plantsync.agent.supervisor import first_completed
from plantsync.contracts import machine_stream
from plantsync.contracts.machine import HistoryGap
from plantsync.drivers.base import AlarmAcknowledger, AlarmSource, HistorySource, Source
from plantsync.errors import SourceUnavailable, StoreFull


async def run_beside(
    name: str,
    source: Source,
    pipeline: Pipeline,
    business: BusinessWriter,
    since: Mapping[tuple[str, str], datetime],
    acks: AlarmAcks,
) -> None:
    """Alarms and HQ's acks of them until the session ends; the backfill of ``since``'s gap
    once, beside them."""
    alarms = _alarms(name, source, business) if isinstance(source, AlarmSource) else _idle()
    if isinstance(source, AlarmAcknowledger):
        alarms = first_completed(alarms, acks.run(name, source))
    history = (
        _history(name, source, pipeline, business, since)
        if isinstance(source, HistorySource) and since
        else _done()
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


async def _history(
    name: str,
    source: HistorySource,
    pipeline: Pipeline,
    business: BusinessWriter,
    since: Mapping[tuple[str, str], datetime],
) -> None:
    async for found in source.history(since):
        if isinstance(found, list):
            await pipeline.submit(name, found)
            continue
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


async def _done() -> None:
    return

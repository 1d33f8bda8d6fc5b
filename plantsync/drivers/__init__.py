"""One module per plant-side or hub-side protocol, and the registry of driver kinds.

The registry is an explicit dict, not import side effects: adding a driver is writing its
module and one line here, keyed by its config section's name; ``plantsync.app`` builds each
configured section's driver from it, and nothing in ``plantsync.agent`` names a driver.

Each driver module is imported by its link's first connect, not with the registry: asyncua
(OPC UA, Job Control) is a third of the agent's start-up CPU, httpx with its command line (the
MES) a tenth, and an agent pays only for the drivers it uses, after READY=1. Start-up is
CPU-bound, so on a loaded machine this moves READY=1 by seconds (docs/performance.md,
"Start-up").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plantsync.drivers.base import Reading, ScheduleSink, Source

if TYPE_CHECKING:
    from plantsync.drivers.mespoll.source import MesPollSource


def _opcua(config: Any) -> Source:
    from plantsync.drivers.opcua import OpcUaSource

    return OpcUaSource(config)


def _jobcontrol(config: Any) -> ScheduleSink:
    from plantsync.drivers.jobcontrol import JobControlSink

    return JobControlSink(config)


def _mes(config: Any) -> ScheduleSink:
    from plantsync.drivers.mes_http import MesHttpSink

    return MesHttpSink(config)


def _mes_poll(config: Any) -> MesPollSource:
    from plantsync.drivers.mespoll.source import MesPollSource

    return MesPollSource(config)


SOURCES: dict[str, Callable[[Any], Source]] = {
    "opcua": _opcua,
}
"""Source kind (the config section's name) → constructor taking that section's config."""

SCHEDULE_SINKS: dict[str, Callable[[Any], ScheduleSink]] = {
    "jobcontrol": _jobcontrol,
    "mes": _mes,
}
"""Plant systems that take the schedule, in order of preference when several are configured
(machines through Job Control ahead of the MES) → constructor taking that section's config.
With none configured the agent keeps the schedule itself (``localschedule``)."""

POLLERS: dict[str, Callable[[Any], MesPollSource]] = {
    "mes_poll": _mes_poll,
}
"""Polled endpoint kind (the config list's name) → constructor taking one endpoint's config;
the agent runs each under ``agent/polling`` (schedule, cursor, supervision)."""

__all__ = ["POLLERS", "SCHEDULE_SINKS", "SOURCES", "Reading", "ScheduleSink", "Source"]

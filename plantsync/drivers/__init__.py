"""One module per plant-side or hub-side protocol, and the registry of driver kinds.

The registry is an explicit dict, not import side effects: adding a driver is writing its
module and one line here, keyed by its config section's name; ``plantsync.app`` builds each
configured section's driver from it, and nothing in ``plantsync.agent`` names a driver.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plantsync.drivers.base import Reading, ScheduleSink, Source
from plantsync.drivers.jobcontrol import JobControlSink
from plantsync.drivers.mes_http import MesHttpSink
from plantsync.drivers.mespoll import MesPollSource
from plantsync.drivers.opcua import OpcUaSource

SOURCES: dict[str, Callable[[Any], Source]] = {
    "opcua": OpcUaSource,
}
"""Source kind (the config section's name) → constructor taking that section's config."""

SCHEDULE_SINKS: dict[str, Callable[[Any], ScheduleSink]] = {
    "jobcontrol": JobControlSink,
    "mes": MesHttpSink,
}
"""Plant systems that take the schedule, in order of preference when several are configured
(machines through Job Control ahead of the MES) → constructor taking that section's config.
With none configured the agent keeps the schedule itself (``localschedule``)."""

POLLERS: dict[str, Callable[[Any], MesPollSource]] = {
    "mes_poll": MesPollSource,
}
"""Polled endpoint kind (the config list's name) → constructor taking one endpoint's config;
the agent runs each under ``agent/polling`` (schedule, cursor, supervision)."""

__all__ = ["POLLERS", "SCHEDULE_SINKS", "SOURCES", "Reading", "ScheduleSink", "Source"]

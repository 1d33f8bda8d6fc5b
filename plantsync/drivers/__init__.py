"""One module per plant-side or hub-side protocol, and the registry of source kinds.

The registry is an explicit dict, not import side effects: adding a driver is one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plantsync.drivers.base import Reading, Source
from plantsync.drivers.opcua import OpcUaSource

SOURCES: dict[str, Callable[[Any], Source]] = {
    "opcua": OpcUaSource,
}
"""Source kind (the config section's name) → constructor taking that section's config."""

__all__ = ["SOURCES", "Reading", "Source"]

"""The retained per-site health signal on ``<prefix>/<site>/status``.

The agent publishes ``online`` (retained) after every connect, and registers ``offline``
(retained) as its MQTT last will, so a consumer that subscribes at any time learns whether the
site is connected, which version runs and with which config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from plantsync.contracts.envelope import SITE_PATTERN, Contract

SITE_STATUS_VERSION = 1


class SiteStatus(Contract):
    """Payload of the retained status topic (not wrapped in an envelope: it is a state)."""

    type: Literal["site.status"] = "site.status"
    schema_version: int = SITE_STATUS_VERSION
    site: str = Field(pattern=SITE_PATTERN)
    state: Literal["online", "offline"]
    reason: Literal["connected", "shutdown", "connection-lost"]
    version: str
    config_hash: str
    since: AwareDatetime

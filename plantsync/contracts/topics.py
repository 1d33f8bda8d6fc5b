"""The MQTT topic tree: one subtree per site under a configurable prefix.

    <prefix>/<site>/status                       retained: online / offline (last will)
    <prefix>/<site>/up/machine/<machine>/state   machine.state, QoS 1

Every topic a site publishes or subscribes to starts with ``<prefix>/<site>/`` so one broker
ACL pattern per site confines it (see packaging/mosquitto-acl.conf).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Builds the topics of one site."""

    prefix: str
    site: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def status(self) -> str:
        return f"{self.root}/status"

    def machine_state(self, machine_id: str) -> str:
        return f"{self.root}/up/machine/{machine_id}/state"

    def all_sites(self) -> str:
        """A subscription filter that matches every site under the prefix (HQ side)."""
        return f"{self.prefix}/+/#"

    def this_site(self) -> str:
        return f"{self.root}/#"

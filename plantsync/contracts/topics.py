"""The MQTT topic tree: one subtree per site under a configurable prefix.

    <prefix>/<site>/status                              retained: online / offline (last will)
    <prefix>/<site>/up/machine/<machine>/state          machine.state, QoS 1
    <prefix>/<site>/down/schedule                       every schedule message HQ sends the site
    <prefix>/<site>/down/alarm                          alarm.ack: HQ acknowledges an alarm
    <prefix>/<site>/up/ack                              schedule.ack, one or more per down message
    <prefix>/<site>/up/order/<order_id>/status          order.status
    <prefix>/<site>/up/order/<order_id>/confirmation    production.confirmation
    <prefix>/<site>/up/resync                           resync.request: "send me a snapshot"
    <prefix>/<site>/up/alarm                            alarm (OPC UA Alarms & Conditions)
    <prefix>/<site>/up/gap                              history.gap: values no history could fill

Every topic a site publishes or subscribes to starts with ``<prefix>/<site>/`` so one broker
ACL pattern per site confines it (see packaging/mosquitto-acl.conf). All of a site's schedule
changes share one topic, so the broker keeps them in the order HQ sent them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ORDER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
"""Order ids become topic levels: no '/', '+', '#' or spaces, and never '.' or '..' alone."""

_ORDER_ID_RE = re.compile(ORDER_ID_PATTERN)


def _order_level(order_id: str) -> str:
    if not _ORDER_ID_RE.fullmatch(order_id):
        raise ValueError(f"order id {order_id[:140]!r} cannot be a topic level")
    return order_id


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

    @property
    def down_schedule(self) -> str:
        """Where HQ sends every schedule message of the site; the agent subscribes here."""
        return f"{self.root}/down/schedule"

    @property
    def down_alarm(self) -> str:
        """Where HQ sends alarm acknowledgements (``alarm.ack``); the agent subscribes here."""
        return f"{self.root}/down/alarm"

    @property
    def ack(self) -> str:
        return f"{self.root}/up/ack"

    def order_status(self, order_id: str) -> str:
        """Raises ValueError for an order id that is not a valid topic level."""
        return f"{self.root}/up/order/{_order_level(order_id)}/status"

    def confirmation(self, order_id: str) -> str:
        """Raises ValueError for an order id that is not a valid topic level."""
        return f"{self.root}/up/order/{_order_level(order_id)}/confirmation"

    @property
    def resync(self) -> str:
        return f"{self.root}/up/resync"

    @property
    def alarm(self) -> str:
        """Every alarm of the site: one topic, so the broker keeps each stream's order."""
        return f"{self.root}/up/alarm"

    @property
    def gap(self) -> str:
        return f"{self.root}/up/gap"

    def all_sites(self) -> str:
        """A subscription filter that matches every site under the prefix (HQ side)."""
        return f"{self.prefix}/+/#"

    def this_site(self) -> str:
        return f"{self.root}/#"

"""The hub over MQTT: one paho-mqtt connection per session, shaped for asyncio."""

from __future__ import annotations

from plantsync.drivers.mqtt.connection import HubConnection

__all__ = ["HubConnection"]

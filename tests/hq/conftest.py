"""The HQ tools open HubConnections too: none may leave its network thread behind."""

from tests.fixtures.amqtt import amqtt_broker
from tests.mqtt.conftest import no_network_thread_left

__all__ = ["amqtt_broker", "no_network_thread_left"]

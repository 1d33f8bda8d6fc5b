"""The HQ tools open HubConnections too: none may leave its network thread behind."""

from tests.mqtt.conftest import no_network_thread_left

__all__ = ["no_network_thread_left"]

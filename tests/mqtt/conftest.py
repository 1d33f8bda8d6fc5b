"""Every HubConnection test must leave no network thread behind; amqtt, the second broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.fixtures.amqtt import amqtt_broker

__all__ = ["amqtt_broker", "no_network_thread_left"]


@pytest.fixture(autouse=True)
def no_network_thread_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [t.name for t in threading.enumerate() if t.name.startswith("plantsync-mqtt-")]
        if not left:
            return
        time.sleep(0.01)
    pytest.fail(f"network threads still running after the test: {left}")

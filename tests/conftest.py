"""Fixtures shared by every test: real brokers and real OPC UA servers on loopback ports.

Hypothesis runs without its timing checks (per-example deadline, "input generation is slow"):
on a shared 2-core machine they fail on a slow second, not on a defect. Speed is measured by
`make bench`, never asserted by a test.
"""

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.opcua",
    "tests.fixtures.mes",
]

settings.register_profile("plantsync", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("plantsync")

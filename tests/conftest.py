"""Fixtures shared by every test: real brokers and real OPC UA servers on loopback ports."""

pytest_plugins = [
    "tests.fixtures.broker",
    "tests.fixtures.opcua",
    "tests.fixtures.mes",
]

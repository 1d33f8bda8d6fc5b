"""Fixtures for the security tests: a test CA and brokers that demand TLS and credentials."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from plantsync.tools.localbroker import Mosquitto, find_mosquitto
from tests.fixtures.broker import MOSQUITTO_NEEDED
from tests.security.support import (
    PASSWORDS,
    Authority,
    Identity,
    identity_broker,
    mutual_tls_broker,
    password_broker,
)


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority.create(tmp_path / "pki")


@pytest.fixture
def server_identity(authority: Authority) -> Identity:
    return authority.server()


@pytest.fixture
def tls_hub(
    tmp_path: Path, authority: Authority, server_identity: Identity, request: pytest.FixtureRequest
) -> Iterator[Mosquitto]:
    """Mosquitto with mutual TLS, the CN as username and the shipped ACL."""
    broker = mutual_tls_broker(tmp_path / "broker", authority, server_identity)
    with _started(broker, request):
        yield broker


@pytest.fixture
def identity_hub(
    tmp_path: Path, authority: Authority, server_identity: Identity, request: pytest.FixtureRequest
) -> Iterator[Mosquitto]:
    """Mosquitto with mutual TLS whose log names each client certificate's CN; no ACL."""
    broker = identity_broker(tmp_path / "broker", authority, server_identity)
    with _started(broker, request):
        yield broker


@pytest.fixture
def password_hub(
    tmp_path: Path, authority: Authority, server_identity: Identity, request: pytest.FixtureRequest
) -> Iterator[Mosquitto]:
    """Mosquitto with TLS (no client certificates), a password file and the shipped ACL."""
    broker = password_broker(tmp_path / "broker", authority, server_identity, PASSWORDS)
    with _started(broker, request):
        yield broker


@contextmanager
def _started(broker: Mosquitto, request: pytest.FixtureRequest) -> Iterator[None]:
    if find_mosquitto() is None:
        pytest.fail(MOSQUITTO_NEEDED, pytrace=False)
    broker.start()
    try:
        yield
    finally:
        broker.stop()
        request.node.add_report_section("teardown", "mosquitto log", broker.log_tail(50))

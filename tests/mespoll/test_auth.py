"""How an endpoint authenticates, against the simulated MES over real HTTP(S): a bearer token,
basic auth, and mutual TLS with a client certificate from a throwaway CA."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from plantsync.errors import SourceUnavailable
from plantsync.sim.mes import MesTls, SimulatedMes
from plantsync.sim.mes_endpoints import poll_endpoints
from tests.mespoll.conftest import endpoint, polled
from tests.security.support import Authority


async def test_a_bearer_token_is_sent_on_every_request(mes: SimulatedMes, tmp_path: Path) -> None:
    config = endpoint(mes, "capacity", auth={"kind": "bearer", "token": "s3cret-token"})

    async with polled(tmp_path / "store.db", config) as (poll, source):
        await poll.poll(source)

    assert mes.authorizations == ["Bearer s3cret-token"]


async def test_basic_auth_is_sent_on_every_request(mes: SimulatedMes, tmp_path: Path) -> None:
    auth = {"kind": "basic", "username": "plantsync", "password": "pa55"}
    config = endpoint(mes, "capacity", auth=auth)

    async with polled(tmp_path / "store.db", config) as (poll, source):
        await poll.poll(source)

    assert mes.authorizations == ["Basic " + base64.b64encode(b"plantsync:pa55").decode()]


async def test_mutual_tls_reads_with_the_client_certificate_and_fails_without(
    tmp_path: Path,
) -> None:
    authority = Authority.create(tmp_path / "pki")
    server, client = authority.server(), authority.client("plant-01")
    tls = MesTls(server.cert_file, server.key_file, client_ca=authority.cert_file)

    async with SimulatedMes(tls=tls) as mes:
        mes.add_downtime("press-1")
        (base,) = [one for one in poll_endpoints(mes.url) if one.name == "downtime"]
        trusted = {"ca_file": authority.cert_file}
        identity = {"cert_file": client.cert_file, "key_file": client.key_file}
        with_cert = base.model_validate({**base.model_dump(), "tls": trusted | identity})
        without_cert = base.model_validate({**base.model_dump(), "tls": trusted})

        async with polled(tmp_path / "a.db", with_cert) as (poll, source):
            assert await poll.poll(source) == 1
        async with polled(tmp_path / "b.db", without_cert) as (poll, source):
            with pytest.raises(SourceUnavailable):
                await poll.poll(source)

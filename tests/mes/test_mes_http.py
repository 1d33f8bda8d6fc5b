"""The MES REST driver against a real HTTP server on loopback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from plantsync.config.plant import MesConfig
from plantsync.drivers.base import OrderChange
from plantsync.drivers.mes_http import MesHttpSink
from plantsync.errors import SourceUnavailable
from tests.fixtures.mes import MesServer


def change(order_id: str = "PO-1001", revision: int = 1, key: str = "m1:PO-1001") -> OrderChange:
    return OrderChange(key, "schedule.release", order_id, revision, {"quantity": "120.5"})


def config(url: str) -> MesConfig:
    return MesConfig(url=url, request_timeout=timedelta(seconds=2))


async def test_a_change_is_posted_with_its_idempotency_key_and_applied(
    mes_server: MesServer,
) -> None:
    async with MesHttpSink(config(mes_server.url)) as mes:
        verdict = await mes.apply(change())
    assert verdict.applied
    assert mes_server.state.applied["m1:PO-1001"]["change"] == {"quantity": "120.5"}


async def test_the_same_key_twice_takes_effect_once_and_counts_as_applied(
    mes_server: MesServer,
) -> None:
    async with MesHttpSink(config(mes_server.url)) as mes:
        first = await mes.apply(change())
        second = await mes.apply(change())
    assert first.applied
    assert second.applied
    assert mes_server.state.applied_orders() == [("PO-1001", 1)]
    assert mes_server.state.requests == 2


async def test_a_4xx_is_a_refusal_carrying_the_mes_reason(mes_server: MesServer) -> None:
    mes_server.state.refuse_orders["PO-7"] = "work center WC-9 does not exist"
    async with MesHttpSink(config(mes_server.url)) as mes:
        verdict = await mes.apply(change("PO-7", key="m2:PO-7"))
    assert not verdict.applied
    assert verdict.reason == "mes 422: work center WC-9 does not exist"


async def test_a_5xx_is_unavailable_so_the_change_is_retried(mes_server: MesServer) -> None:
    mes_server.state.fail_with = 503
    async with MesHttpSink(config(mes_server.url)) as mes:
        with pytest.raises(SourceUnavailable, match="503"):
            await mes.apply(change())
    assert mes_server.state.applied == {}


async def test_a_stopped_mes_is_unavailable(mes_server: MesServer) -> None:
    mes_server.stop()
    async with MesHttpSink(config(mes_server.url)) as mes:
        with pytest.raises(SourceUnavailable) as raised:
            await mes.apply(change())
    assert raised.value.__cause__ is not None, "the OS error stays in the chain"

"""``hub.url`` as a list: a connection tries the nodes in turn, starts where it last got in,
and moves on after a drop. Real Mosquittos; a closed port for a node that is down."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.config.model import HubConfig
from plantsync.drivers.mqtt import HubConnection, UrlOrder
from plantsync.errors import HubUnavailable
from plantsync.tools.localbroker import Mosquitto, free_port


def hub(*urls: str) -> HubConfig:
    return HubConfig(
        url=", ".join(urls), keepalive=timedelta(seconds=5), connect_timeout=timedelta(seconds=3)
    )


def test_the_order_starts_where_it_got_in_and_moves_on_after_a_drop() -> None:
    order = UrlOrder(["a", "b", "c"])
    assert order.order() == ("a", "b", "c")
    order.connected("b")
    assert order.order() == ("b", "c", "a")
    order.dropped("b")
    assert order.order() == ("c", "a", "b")
    order.dropped("b")  # an old link's drop changes nothing
    assert order.current == "c"


async def test_a_node_that_is_down_is_skipped_within_the_same_attempt(broker: Mosquitto) -> None:
    down = f"mqtt://127.0.0.1:{free_port()}"
    started = time.monotonic()
    async with HubConnection(hub(down, broker.url), client_id="plant") as connection:
        assert connection.url == broker.url
    assert time.monotonic() - started < 1


async def test_after_a_drop_the_next_connect_goes_to_the_next_node(
    broker: Mosquitto, tmp_path: Path
) -> None:
    with Mosquitto(tmp_path / "second") as second:
        config = hub(broker.url, second.url)
        order = UrlOrder(config.urls)
        async with HubConnection(config, client_id="plant", endpoints=order) as first:
            assert first.url == broker.url
            broker.stop()
            with pytest.raises(HubUnavailable):
                await asyncio.wait_for(first.wait_closed(), 10)
        broker.start()  # back, but the next connect starts with the other node
        async with HubConnection(config, client_id="plant", endpoints=order) as then:
            assert then.url == second.url
            assert not then.session_present  # another broker: no session, the agent resyncs
        async with HubConnection(config, client_id="plant", endpoints=order) as again:
            assert again.url == second.url, "a clean close is no reason to move"


async def test_when_no_node_answers_the_error_names_each() -> None:
    urls = [f"mqtt://127.0.0.1:{free_port()}" for _ in range(2)]
    with pytest.raises(HubUnavailable) as unreachable:
        async with HubConnection(hub(*urls), client_id="plant"):
            pass
    message = str(unreachable.value)
    assert message.startswith("no hub node reachable: ")
    assert all(f"{url}: " in message for url in urls)

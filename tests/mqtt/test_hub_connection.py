"""HubConnection against a real Mosquitto: acknowledgements, drops, wills and sessions."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.drivers.hub import Hub, InboundMessage, Will
from plantsync.drivers.mqtt import HubConnection
from plantsync.errors import HubUnavailable, LinkMisconfigured
from plantsync.tools.localbroker import Mosquitto, free_port

BOTH_PROTOCOLS = pytest.mark.parametrize("protocol", [MqttProtocol.V5, MqttProtocol.V311])


def hub(url: str, protocol: MqttProtocol = MqttProtocol.V5, **overrides: object) -> HubConfig:
    settings: dict[str, object] = {
        "url": url,
        "protocol": protocol,
        "keepalive": timedelta(seconds=5),
        "connect_timeout": timedelta(seconds=3),
        **overrides,
    }
    return HubConfig.model_validate(settings)


def as_hub(connection: HubConnection) -> Hub:
    """Type-checked by mypy: HubConnection drifting from the Hub Protocol is an error here."""
    return connection


async def next_message(connection: HubConnection) -> InboundMessage:
    async with asyncio.timeout(5):
        async for message in connection.messages():
            return message
    raise AssertionError("messages() ended without a message")


async def no_message_within(connection: HubConnection, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            await next_message(connection)
    except TimeoutError:
        return True
    return False


@BOTH_PROTOCOLS
async def test_qos1_publish_resolves_on_puback_and_reaches_a_subscriber(
    broker: Mosquitto, protocol: MqttProtocol
) -> None:
    config = hub(broker.url, protocol)
    async with (
        HubConnection(config, client_id="sub", clean_start=True) as subscriber,
        HubConnection(config, client_id="pub", clean_start=True) as publisher,
    ):
        await subscriber.subscribe([("plantsync/v1/#", 1)])
        async with asyncio.timeout(5):
            await publisher.publish("plantsync/v1/plant-01/x", b"hello", qos=1)
        message = await next_message(subscriber)
    assert (message.topic, message.payload, message.qos) == ("plantsync/v1/plant-01/x", b"hello", 1)


async def test_qos0_publish_resolves_once_written(broker: Mosquitto) -> None:
    async with HubConnection(hub(broker.url), client_id="pub", clean_start=True) as publisher:
        async with asyncio.timeout(5):
            await publisher.publish("plantsync/v1/plant-01/x", b"fire and forget", qos=0)


async def test_a_thousand_publishes_through_a_bounded_window_are_all_acknowledged(
    broker: Mosquitto,
) -> None:
    window = asyncio.Semaphore(100)
    acknowledged = 0

    def release(future: asyncio.Future[None]) -> None:
        nonlocal acknowledged
        window.release()
        if future.exception() is None:
            acknowledged += 1

    async with HubConnection(hub(broker.url), client_id="pub", clean_start=True) as publisher:
        futures = []
        async with asyncio.timeout(20):
            for number in range(1000):
                await window.acquire()
                future = publisher.publish(f"plantsync/v1/plant-01/n/{number % 7}", b"x" * 300)
                future.add_done_callback(release)
                futures.append(future)
            await asyncio.gather(*futures)
    assert acknowledged == 1000


async def test_sent_messages_come_back_acknowledged_in_order_through_the_hub_protocol(
    broker: Mosquitto,
) -> None:
    config = hub(broker.url, max_inflight=8)  # a window much smaller than the batch
    batch = [(key, "plantsync/v1/plant-01/n", f"m-{key}".encode()) for key in range(100)]
    keys: list[int] = []
    async with (
        HubConnection(config, client_id="sub", clean_start=True) as subscriber,
        as_hub(HubConnection(config, client_id="uplink", clean_start=True)) as uplink,
    ):
        await subscriber.subscribe([("plantsync/v1/#", 1)])
        uplink.send(batch)
        async with asyncio.timeout(10):
            while len(keys) < len(batch):
                await uplink.acknowledgement_ready.wait()
                keys += uplink.acknowledged()
        received = [await next_message(subscriber) for _ in batch]
    assert keys == [key for key, _, _ in batch]
    assert [message.payload for message in received] == [payload for _, _, payload in batch]


async def test_live_messages_sent_after_a_backfill_overtake_it_in_the_queue_not_the_window(
    broker: Mosquitto,
) -> None:
    config = hub(broker.url, max_inflight=4)
    backfill = [(key, "plantsync/v1/plant-01/n", f"old-{key}".encode()) for key in range(200)]
    live = [(key, "plantsync/v1/plant-01/n", f"new-{key}".encode()) for key in range(200, 205)]
    async with (
        HubConnection(config, client_id="sub", clean_start=True) as subscriber,
        as_hub(HubConnection(config, client_id="uplink", clean_start=True)) as uplink,
    ):
        await subscriber.subscribe([("plantsync/v1/#", 1)])
        uplink.send(backfill, backfill=True)
        uplink.send(live)
        received = [(await next_message(subscriber)).payload for _ in range(205)]
    first_live = received.index(b"new-200")
    assert received[first_live : first_live + 5] == [payload for _, _, payload in live]
    assert first_live < 100, "the live messages did not wait for the backfill queued before them"
    assert [p for p in received if p.startswith(b"old-")] == [p for _, _, p in backfill]


async def test_publish_after_the_broker_stops_fails_with_hub_unavailable(
    broker: Mosquitto,
) -> None:
    async with HubConnection(hub(broker.url), client_id="pub", clean_start=True) as publisher:
        broker.stop()
        with pytest.raises(HubUnavailable):
            async with asyncio.timeout(5):
                await publisher.wait_closed()
        assert publisher.closed
        with pytest.raises(HubUnavailable):
            publisher.publish("plantsync/v1/plant-01/x", b"too late")


async def test_pending_publishes_fail_with_hub_unavailable_when_the_link_drops(
    broker: Mosquitto,
) -> None:
    async with HubConnection(hub(broker.url), client_id="pub", clean_start=True) as publisher:
        broker.kill()
        # Handed to paho before the drop is noticed: they must fail, never hang.
        futures = [publisher.publish("plantsync/v1/plant-01/x", b"x") for _ in range(10)]
        async with asyncio.timeout(5):
            results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(result, HubUnavailable) for result in results)


async def test_wait_closed_raises_soon_after_the_broker_stops(broker: Mosquitto) -> None:
    async with HubConnection(hub(broker.url), client_id="agent") as connection:
        started = time.monotonic()
        broker.stop()
        with pytest.raises(HubUnavailable, match=r"127\.0\.0\.1"):
            async with asyncio.timeout(10):  # keepalive 5 s: a bound, not the expected time
                await connection.wait_closed()
    assert time.monotonic() - started < 5


async def test_messages_end_with_hub_unavailable_when_the_link_drops(broker: Mosquitto) -> None:
    async with HubConnection(hub(broker.url), client_id="agent", clean_start=True) as connection:
        await connection.subscribe([("plantsync/v1/#", 1)])
        broker.kill()
        with pytest.raises(HubUnavailable):
            await next_message(connection)


async def test_connecting_to_a_closed_port_raises_hub_unavailable_quickly() -> None:
    config = hub(f"mqtt://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(HubUnavailable, match="Connection refused"):
        async with asyncio.timeout(5), HubConnection(config, client_id="agent"):
            pass
    assert time.monotonic() - started < 1


@BOTH_PROTOCOLS
async def test_a_broker_that_refuses_the_client_raises_link_misconfigured(
    tmp_path: Path, protocol: MqttProtocol
) -> None:
    refusing = Mosquitto(tmp_path / "broker", extra_config="allow_anonymous false")
    with refusing, pytest.raises(LinkMisconfigured, match="Not authorized"):
        async with asyncio.timeout(5), HubConnection(hub(refusing.url, protocol), client_id="x"):
            pass


async def test_the_retained_will_is_published_when_the_link_dies_without_disconnect(
    broker: Mosquitto,
) -> None:
    config = hub(broker.url)
    will = Will("plantsync/v1/plant-01/status", b"offline")
    async with HubConnection(config, client_id="watcher", clean_start=True) as watcher:
        await watcher.subscribe([("plantsync/v1/plant-01/status", 1)])
        async with HubConnection(config, client_id="agent", will=will) as agent:
            # Half-close the socket: the broker sees the connection end without DISCONNECT.
            agent_socket = agent._client.socket() if agent._client else None
            assert isinstance(agent_socket, socket.socket)
            agent_socket.shutdown(socket.SHUT_RDWR)
            with pytest.raises(HubUnavailable):
                async with asyncio.timeout(5):
                    await agent.wait_closed()
        message = await next_message(watcher)
    assert (message.payload, message.retain) == (b"offline", False)  # live delivery
    async with HubConnection(config, client_id="late", clean_start=True) as late:
        await late.subscribe([("plantsync/v1/plant-01/status", 1)])
        retained = await next_message(late)
    assert (retained.payload, retained.retain) == (b"offline", True)


async def test_the_will_is_not_published_on_a_clean_exit(broker: Mosquitto) -> None:
    config = hub(broker.url)
    will = Will("plantsync/v1/plant-01/status", b"offline")
    async with HubConnection(config, client_id="watcher", clean_start=True) as watcher:
        await watcher.subscribe([("plantsync/v1/plant-01/status", 1)])
        async with HubConnection(config, client_id="agent", will=will):
            pass
        assert await no_message_within(watcher, 0.5)


@BOTH_PROTOCOLS
async def test_a_message_published_while_a_persistent_subscriber_is_away_arrives_on_return(
    broker: Mosquitto, protocol: MqttProtocol
) -> None:
    config = hub(broker.url, protocol)
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        await plant.subscribe([("plantsync/v1/plant-01/down/#", 1)])
    async with HubConnection(config, client_id="hq", clean_start=True) as hq:
        async with asyncio.timeout(5):
            await hq.publish("plantsync/v1/plant-01/down/order", b"release 42")
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        assert plant.session_present
        message = await next_message(plant)
        plant.ack(message)
    assert message.payload == b"release 42"


async def test_an_unacknowledged_message_is_delivered_again_in_the_next_session(
    broker: Mosquitto,
) -> None:
    config = hub(broker.url)
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        await plant.subscribe([("plantsync/v1/plant-01/down/#", 1)])
        async with HubConnection(config, client_id="hq", clean_start=True) as hq:
            await asyncio.wait_for(hq.publish("plantsync/v1/plant-01/down/order", b"o-1"), 5)
        first = await next_message(plant)  # not acked: it never became durable
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        again = await next_message(plant)
        plant.ack(again)
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        assert await no_message_within(plant, 0.5)
    assert first.payload == again.payload == b"o-1"


async def test_a_clean_start_discards_the_previous_session(broker: Mosquitto) -> None:
    config = hub(broker.url)
    async with HubConnection(config, client_id="plant") as plant:
        await plant.subscribe([("plantsync/v1/plant-01/down/#", 1)])
    async with HubConnection(config, client_id="plant", clean_start=True) as plant:
        assert not plant.session_present


async def test_broker_restart_keeps_persistent_sessions_and_queued_messages(
    broker: Mosquitto,
) -> None:
    config = hub(broker.url)
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        await plant.subscribe([("plantsync/v1/plant-01/down/#", 1)])
    async with HubConnection(config, client_id="hq", clean_start=True) as hq:
        await asyncio.wait_for(hq.publish("plantsync/v1/plant-01/down/order", b"o-7"), 5)
    broker.restart()
    async with HubConnection(config, client_id="plant", manual_ack=True) as plant:
        assert plant.session_present
        message = await next_message(plant)
        plant.ack(message)
    assert message.payload == b"o-7"

"""``hub.protocol = "auto"``: MQTT 5 where the broker speaks it, 3.1.1 at once where it does
not, whichever way the broker says so; remembered; explicit versions unchanged."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path

import pytest

from plantsync.config.model import HubConfig, MqttProtocol
from plantsync.drivers.mqtt import HubConnection, ProtocolChoice
from plantsync.drivers.mqtt.negotiation import PROBE_TIMEOUT
from plantsync.errors import HubUnavailable, LinkMisconfigured
from plantsync.tools.localbroker import Mosquitto, free_port
from tests.fixtures.amqtt import Amqtt
from tests.mqtt.gate import V5, V311, Answer, VersionGate
from tests.mqtt.test_hub_connection import next_message

ANSWERS = pytest.mark.parametrize("answer", ["refuse", "close", "silence"])
DOWN = "plantsync/v1/plant-01/down/schedule"


def hub(url: str, protocol: MqttProtocol = MqttProtocol.AUTO) -> HubConfig:
    return HubConfig(
        url=url,
        protocol=protocol,
        keepalive=timedelta(seconds=5),
        connect_timeout=timedelta(seconds=8),
    )


async def timed_connect(
    config: HubConfig, protocols: ProtocolChoice | None = None, client_id: str = "plant"
) -> tuple[MqttProtocol | None, float]:
    """Connect and disconnect at once; the version used and the seconds the connect took."""
    started = time.monotonic()
    async with HubConnection(config, client_id=client_id, protocols=protocols) as connection:
        elapsed = time.monotonic() - started
        return connection.protocol, elapsed


def gate(broker: Mosquitto, answer: Answer, refused: int = V5) -> VersionGate:
    return VersionGate(broker.port, answer, frozenset({refused}))


async def test_a_broker_that_speaks_mqtt5_gets_mqtt5_at_the_first_try(broker: Mosquitto) -> None:
    async with gate(broker, "refuse", refused=V311) as mqtt5_only:
        protocol, elapsed = await timed_connect(hub(mqtt5_only.url))
    assert protocol is MqttProtocol.V5
    assert mqtt5_only.turned_away == []
    assert elapsed < 1


@ANSWERS
async def test_a_broker_that_turns_mqtt5_away_gets_3_1_1_in_the_same_attempt(
    broker: Mosquitto, answer: Answer
) -> None:
    async with gate(broker, answer) as mqtt311_only:
        protocol, elapsed = await timed_connect(hub(mqtt311_only.url))
    assert protocol is MqttProtocol.V311
    assert mqtt311_only.turned_away == [V5]
    # Silence costs the probe timeout; a refusal or a closed socket costs nothing.
    assert elapsed < (PROBE_TIMEOUT + 1 if answer == "silence" else 1)


async def test_amqtt_is_reached_over_3_1_1_and_the_next_connect_goes_straight_there(
    amqtt_broker: Amqtt,
) -> None:
    protocols = ProtocolChoice(MqttProtocol.AUTO)
    first, probing = await timed_connect(hub(amqtt_broker.url), protocols)
    second, straight = await timed_connect(hub(amqtt_broker.url), protocols)
    print(f"amqtt, auto: first connect {probing:.2f} s (MQTT 5 probe), next {straight:.2f} s")
    assert (first, second) == (MqttProtocol.V311, MqttProtocol.V311)
    assert protocols.negotiated(amqtt_broker.url) is MqttProtocol.V311
    assert PROBE_TIMEOUT <= probing < PROBE_TIMEOUT + 2
    assert straight < 1


async def test_the_remembered_version_is_offered_first_and_mqtt5_again_when_it_fails(
    broker: Mosquitto,
) -> None:
    protocols = ProtocolChoice(MqttProtocol.AUTO)
    async with gate(broker, "refuse") as mqtt311_only:
        config = hub(mqtt311_only.url)
        assert (await timed_connect(config, protocols))[0] is MqttProtocol.V311
        assert (await timed_connect(config, protocols))[0] is MqttProtocol.V311
        assert mqtt311_only.turned_away == [V5]  # the second connect did not offer 5
        # Another broker answers at the URL now: it speaks 5 and refuses 3.1.1.
        mqtt311_only.refused = frozenset({V311})
        assert (await timed_connect(config, protocols))[0] is MqttProtocol.V5
        assert (await timed_connect(config, protocols))[0] is MqttProtocol.V5
        assert mqtt311_only.turned_away == [V5, V311]
    assert protocols.negotiated(config.url) is MqttProtocol.V5


async def test_a_refused_tcp_connection_forgets_nothing_and_probes_nothing() -> None:
    protocols = ProtocolChoice(MqttProtocol.AUTO)
    closed = hub(f"mqtt://127.0.0.1:{free_port()}")
    protocols.accepted(closed.url, MqttProtocol.V311)
    started = time.monotonic()
    with pytest.raises(HubUnavailable, match="Connection refused") as refused:
        await timed_connect(closed, protocols)
    assert time.monotonic() - started < 1
    assert "not accepted" not in str(refused.value)
    assert protocols.negotiated(closed.url) is MqttProtocol.V311


async def test_a_refused_login_is_not_taken_for_a_version_problem(tmp_path: Path) -> None:
    refusing = Mosquitto(tmp_path / "broker", extra_config="allow_anonymous false")
    with refusing, pytest.raises(LinkMisconfigured, match="Not authorized") as refused:
        await timed_connect(hub(refusing.url))
    assert "3.1.1" not in str(refused.value), "no second version was tried"


async def test_when_neither_version_is_accepted_the_error_names_both(
    broker: Mosquitto,
) -> None:
    both = VersionGate(broker.port, "refuse", frozenset({V5, V311}))
    async with both:
        # paho ends a 3.1.1 link refused for its version with a protocol error, no CONNACK.
        with pytest.raises(HubUnavailable) as refused:
            await timed_connect(hub(both.url))
    message = str(refused.value)
    assert "MQTT 5 not accepted" in message
    assert "MQTT 3.1.1: " in message
    assert both.turned_away == [V5, V311]


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        ("refuse", LinkMisconfigured, "Unsupported protocol version"),
        ("close", HubUnavailable, "disconnected"),
        ("silence", HubUnavailable, "no CONNACK"),
    ],
)
async def test_an_explicit_mqtt5_against_a_3_1_1_broker_fails_as_before(
    broker: Mosquitto, answer: Answer, error: type[Exception], match: str
) -> None:
    config = hub("mqtt://x", MqttProtocol.V5).model_copy(
        update={"connect_timeout": timedelta(seconds=2)}
    )
    async with gate(broker, answer) as mqtt311_only:
        config = config.model_copy(update={"url": mqtt311_only.url})
        with pytest.raises(error, match=match):
            await timed_connect(config)
    assert mqtt311_only.turned_away == [V5], "only the version configured was offered"


async def test_a_persistent_session_on_3_1_1_keeps_what_arrives_while_the_plant_is_away(
    broker: Mosquitto,
) -> None:
    async with gate(broker, "close") as mqtt311_only:
        config = hub(mqtt311_only.url)
        protocols = ProtocolChoice(MqttProtocol.AUTO)
        async with HubConnection(
            config, client_id="plant", manual_ack=True, protocols=protocols
        ) as plant:
            assert plant.protocol is MqttProtocol.V311
            await plant.subscribe([(DOWN, 1)])
        async with HubConnection(config, client_id="hq", clean_start=True) as hq:
            await asyncio.wait_for(hq.publish(DOWN, b"release 42"), 5)
        async with HubConnection(
            config, client_id="plant", manual_ack=True, protocols=protocols
        ) as plant:
            assert plant.session_present
            message = await next_message(plant)
            plant.ack(message)
    assert message.payload == b"release 42"

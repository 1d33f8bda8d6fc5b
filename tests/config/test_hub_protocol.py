"""``hub.protocol``: negotiated by default, either version by hand, anything else refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantsync.config import load_config, sample_config_path
from plantsync.config.model import MqttProtocol
from plantsync.errors import ConfigError

MINIMAL = '[site]\nid = "plant-01"\n\n[hub]\nurl = "mqtt://127.0.0.1:1883"\n'


def test_the_protocol_is_negotiated_unless_the_file_says_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL)
    assert load_config(path, {}).hub.protocol is MqttProtocol.AUTO
    assert load_config(sample_config_path(), {}).hub.protocol is MqttProtocol.AUTO


@pytest.mark.parametrize(
    ("value", "protocol"),
    [("auto", MqttProtocol.AUTO), ("5", MqttProtocol.V5), ("3.1.1", MqttProtocol.V311)],
)
def test_each_protocol_can_be_set_in_the_file_or_the_environment(
    tmp_path: Path, value: str, protocol: MqttProtocol
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL + f'protocol = "{value}"\n')
    assert load_config(path, {}).hub.protocol is protocol
    plain = tmp_path / "plain.toml"
    plain.write_text(MINIMAL)
    assert load_config(plain, {"PLANTSYNC_HUB__PROTOCOL": value}).hub.protocol is protocol


def test_an_unknown_protocol_is_refused_naming_the_versions_allowed(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL + 'protocol = "3.1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    [problem] = caught.value.problems
    assert problem.key == "hub.protocol"
    assert "'auto', '5' or '3.1.1'" in problem.reason


# -- hub.url as a list: a broker cluster's nodes ---------------------------------------------


def test_a_list_of_urls_is_kept_in_order_also_from_one_comma_separated_string(
    tmp_path: Path,
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL.replace('"mqtt://127.0.0.1:1883"', '["mqtt://a:1883", "mqtt://b"]'))
    listed = load_config(path, {}).hub
    assert listed.urls == ("mqtt://a:1883", "mqtt://b")
    assert (listed.host, listed.port) == ("a", 1883)
    from_env = load_config(path, {"PLANTSYNC_HUB__URL": "mqtt://c:1, mqtt://d:2"}).hub
    assert from_env.urls == ("mqtt://c:1", "mqtt://d:2")


@pytest.mark.parametrize(
    ("urls", "reason"),
    [
        ('["mqtt://a", "mqtts://b"]', "mqtt:// and mqtts:// cannot be mixed"),
        ('["mqtt://a", "http://b"]', "'http://b' must start with mqtt:// or mqtts://"),
        ('"mqtt://a,"', "'' must start with mqtt://"),
    ],
)
def test_every_url_of_a_list_is_checked(tmp_path: Path, urls: str, reason: str) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL.replace('"mqtt://127.0.0.1:1883"', urls))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    [problem] = caught.value.problems
    assert (problem.key, reason in problem.reason) == ("hub.url", True), problem

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

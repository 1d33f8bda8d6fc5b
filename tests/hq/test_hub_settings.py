"""The hub tools' connection settings: the agent's [hub], from a file, the environment and
flags, the later winning; every problem names where the value came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantsync.config import sample_config_path
from plantsync.config.model import MqttProtocol
from plantsync.errors import ConfigError, Problem
from plantsync.tools.hubsettings import HubFlags, hub_settings

PASSWORD = "s3cret-Pa55"  # noqa: S105 - a test value that must never be shown
AGENT_TOML = """\
[site]
id = "plant-01"

[hub]
url = "mqtts://hub.example.com:8883"
protocol = "5"
topic_prefix = "acme/v1"
username = "plant-01"

[hub.tls]
ca_file = "/etc/plantsync/tls/ca.pem"
verify = "ca-only"

[store]
path = "/nowhere/store.db"
"""


def problems(flags: HubFlags, file: Path | None = None, **environ: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        hub_settings(flags, file, environ)
    return caught.value.problems


def test_the_file_then_the_environment_then_the_flags(tmp_path: Path) -> None:
    file = tmp_path / "agent.toml"
    file.write_text(AGENT_TOML)
    environ = {
        "PLANTSYNC_HUB__PROTOCOL": "3.1.1",
        "PLANTSYNC_HUB__USERNAME": "hq-ops",
        "PLANTSYNC_HUB__TLS__VERIFY": "full",
        "PLANTSYNC_STORE__PATH": "/the/agent's/business",
    }
    config = hub_settings(HubFlags(broker="mqtts://other:8883", username="me"), file, environ)
    assert config.url == "mqtts://other:8883"  # flag over file
    assert config.protocol is MqttProtocol.V311  # environment over file
    assert config.username == "me"  # flag over environment
    assert config.topic_prefix == "acme/v1"  # file
    assert config.tls is not None
    assert (config.tls.ca_file, config.tls.verify) == (Path("/etc/plantsync/tls/ca.pem"), "full")


def test_flags_alone_are_enough_and_the_protocol_defaults_to_auto() -> None:
    config = hub_settings(HubFlags(broker="mqtt://127.0.0.1:1883"), None, {})
    assert config.protocol is MqttProtocol.AUTO
    assert config.topic_prefix == "plantsync/v1"
    assert config.tls is None


def test_the_sample_agent_config_serves_as_the_tools_config() -> None:
    config = hub_settings(HubFlags(), sample_config_path(), {})
    assert config.url == "mqtt://127.0.0.1:1883"


def test_the_password_comes_from_the_environment_never_shown() -> None:
    environ = {"PLANTSYNC_HUB__PASSWORD": PASSWORD}
    config = hub_settings(HubFlags(broker="mqtt://h"), None, environ)
    assert config.password is not None
    assert config.password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(config)


def test_no_url_anywhere_says_where_one_can_come_from() -> None:
    [problem] = problems(HubFlags())
    assert problem.key == "hub.url"
    assert "give --broker, --config FILE or PLANTSYNC_HUB__URL" in problem.reason


def test_a_bad_value_names_the_flag_or_variable_it_came_from() -> None:
    [url] = problems(HubFlags(broker="http://h"))
    assert (url.file, url.key) == ("--broker", "hub.url")
    [keepalive] = problems(HubFlags(broker="mqtt://h"), None, PLANTSYNC_HUB__KEEPALIVE="soon")
    assert (keepalive.file, keepalive.key) == ("env PLANTSYNC_HUB__KEEPALIVE", "hub.keepalive")


def test_an_unknown_hub_variable_is_an_error_not_ignored() -> None:
    [problem] = problems(HubFlags(broker="mqtt://h"), None, PLANTSYNC_HUB__COLOUR="blue")
    assert problem.file == "env PLANTSYNC_HUB__COLOUR"
    assert problem.reason.startswith("unknown key (allowed here: url, protocol,")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[site]\nid = "p"\n', "no [hub] section"),
        ("[hub\n", "not a TOML file"),
        ('[hub]\nurl = "mqtt://h"\ncolour = 1\n', "unknown key"),
    ],
)
def test_a_config_file_that_cannot_serve_is_named(tmp_path: Path, text: str, reason: str) -> None:
    file = tmp_path / "agent.toml"
    file.write_text(text)
    [problem] = problems(HubFlags(), file)
    assert problem.file == str(file)
    assert reason in problem.reason


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    [problem] = problems(HubFlags(), tmp_path / "nope.toml")
    assert problem.reason.startswith("cannot read")

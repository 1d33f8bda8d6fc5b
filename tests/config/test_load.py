"""Loading the config: the sample, every rejection message, environment overrides, secrets."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from plantsync.config import (
    AgentConfig,
    config_hash,
    load_config,
    model,
    plant,
    sample_config_path,
    summarize,
    types,
)
from plantsync.errors import ConfigError, Problem

INVALID = Path(__file__).parent / "invalid"
HUB_PASSWORD = "hub-s3cret-Pa55"  # noqa: S105 - a test value that must never be echoed
OPCUA_PASSWORD = "opc-s3cret-Pa55"  # noqa: S105 - a test value that must never be echoed

MINIMAL = """\
[site]
id = "plant-01"

[hub]
url = "mqtt://127.0.0.1:1883"
"""

WITH_SECRETS = f"""\
[site]
id = "plant-01"

[hub]
url = "mqtt://127.0.0.1:1883"
username = "plant-01"
password = "{HUB_PASSWORD}"

[[opcua]]
name = "line-1"
endpoint = "opc.tcp://127.0.0.1:4840/"
username = "plantsync"
password = "{OPCUA_PASSWORD}"

[[opcua.machines]]
id = "press-1"
tags = [{{ name = "speed", node_id = "ns=2;s=press-1.speed" }}]
"""


def write(tmp_path: Path, text: str, name: str = "agent.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, environ: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return caught.value.problems


# -- the sample ----------------------------------------------------------------------------


def test_sample_config_loads() -> None:
    config = load_config(sample_config_path(), {})

    assert config.site.id == "plant-01"
    assert config.hub.url == "mqtt://127.0.0.1:1883"
    assert config.store.path == Path("/var/lib/plantsync/store.db")
    [server] = config.opcua
    assert server.endpoint == "opc.tcp://127.0.0.1:4840/plantsync/"
    assert [machine.id for machine in server.machines] == ["press-1", "press-2", "lathe-1"]
    tags = [tag for machine in server.machines for tag in machine.tags]
    assert any(tag.browse_path for tag in tags)
    assert any(tag.deadband for tag in tags)


@pytest.mark.parametrize(
    "section",
    [
        model.AgentConfig,
        model.SiteConfig,
        model.HubConfig,
        types.Tls,
        model.StoreConfig,
        plant.MesConfig,
        model.ScheduleConfig,
        model.ApiConfig,
        plant.JobControlConfig,
        plant.OpcUaServerConfig,
        plant.MachineConfig,
        plant.TagConfig,
        plant.Deadband,
        plant.PollEndpointConfig,
        plant.PollCursor,
        plant.PollAuth,
        model.PolicyConfig,
        model.ReconnectConfig,
        model.LogConfig,
    ],
    ids=lambda section: section.__name__,
)
def test_sample_config_documents_every_key_of_the_model(section: type[BaseModel]) -> None:
    text = sample_config_path().read_text(encoding="utf-8")

    missing = [name for name in section.model_fields if not re.search(rf"\b{name}\b", text)]

    assert missing == []


def test_summary_names_site_hub_store_servers_and_hash() -> None:
    path = sample_config_path()
    config = load_config(path, {})

    summary = summarize(config, path)

    assert "plant-01" in summary
    assert "mqtt://127.0.0.1:1883" in summary
    assert "plantsync-plant-01" in summary
    assert "/var/lib/plantsync/store.db" in summary
    assert "line-1" in summary
    assert "3 machines, 15 tags" in summary
    assert config_hash(config) in summary
    assert len(summary.splitlines()) <= 8


# -- rejections, one small invalid file each -----------------------------------------------


@pytest.mark.parametrize(
    ("file", "key", "reason"),
    [
        ("unknown_top_level_key.toml", "colour", "unknown key (allowed here: site, hub, store,"),
        (
            "unknown_tag_key.toml",
            "opcua[0].machines[1].tags[2].unit",
            "unknown key (allowed here: name, node_id, browse_path, sampling_interval,"
            " queue_size, deadband)",
        ),
        ("missing_site_id.toml", "site.id", "required"),
        ("bad_duration.toml", "hub.keepalive", "'10 parsecs' is not a duration"),
        ("duration_without_unit.toml", "hub.connect_timeout", "10 has no unit"),
        ("bad_url_scheme.toml", "hub.url", "must start with mqtt:// or mqtts://"),
        (
            "node_id_and_browse_path.toml",
            "opcua[0].machines[0].tags[1]",
            "exactly one of node_id or browse_path",
        ),
        ("duplicate_machine_ids.toml", "opcua", "machine ids must be unique: ['press-1']"),
        (
            "event_notifier_not_a_node_id.toml",
            "opcua[0].event_notifiers",
            "'Server' is not a node id like 'i=2253'",
        ),
        ("bad_toml_syntax.toml", "line 5, column 7", "TOML syntax: Invalid value"),
        ("sign_without_certificate.toml", "opcua[0]", "Sign needs certificate and private_key"),
        ("lifetime_below_three_keepalives.toml", "opcua[0]", "at least 3 x keepalive_count"),
        ("bad_byte_size.toml", "store.max_size", "write a number and a unit: '512MB'"),
        (
            "api_off_loopback_without_token.toml",
            "api",
            "host '0.0.0.0' is not loopback: set token",
        ),
        (
            "retention_schedule_not_cron.toml",
            "store.retention_schedule",
            "'30 25 * * *' is not a cron expression 'minute hour day month weekday' such as"
            " '30 3 * * *': Error validating expression '25'",
        ),
        (
            "retention_weekday_by_number.toml",
            "store.retention_schedule",
            "'30 3 * * 0': write weekdays by name (sun, mon-fri), not by number",
        ),
        (
            "seen_ids_shorter_than_session.toml",
            "store",
            "keep_seen_ids (3 days, 0:00:00) is shorter than hub.session_expiry (7 days, 0:00:00)",
        ),
    ],
    ids=lambda value: value.removesuffix(".toml") if value.endswith(".toml") else "",
)
def test_invalid_file_is_refused_naming_file_key_and_reason(
    file: str, key: str, reason: str
) -> None:
    path = INVALID / file

    [problem] = problems_of(path)

    assert problem.file == str(path)
    assert problem.key == key
    assert reason in problem.reason


def test_every_invalid_file_is_covered_by_a_rejection_test() -> None:
    assert len(list(INVALID.glob("*.toml"))) == 17


def test_retention_defaults_keep_ids_longer_than_the_broker_keeps_a_session(
    tmp_path: Path,
) -> None:
    config = load_config(write(tmp_path, MINIMAL), {})

    store = config.store
    assert store.keep_processed == timedelta(days=7)
    assert store.keep_seen_ids == timedelta(days=30)
    assert store.keep_seen_ids >= config.hub.session_expiry
    assert (store.keep_dead_letters, store.max_dead_letters) == (timedelta(days=30), 10_000)
    assert store.retention_schedule == "30 3 * * *"


def test_retention_keys_load_from_the_file_and_the_environment(tmp_path: Path) -> None:
    text = MINIMAL + 'session_expiry = "1d"\n\n[store]\nkeep_seen_ids = "1d"\n'
    environ = {"PLANTSYNC_STORE__RETENTION_SCHEDULE": "15 2 * * mon-fri"}

    config = load_config(write(tmp_path, text), environ)

    assert config.store.keep_seen_ids == timedelta(days=1), "as long as the session: enough"
    assert config.store.retention_schedule == "15 2 * * mon-fri"


def test_a_session_longer_than_the_default_id_window_is_refused_naming_both_keys(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL + 'session_expiry = "60d"\n')

    [problem] = problems_of(path)

    assert problem.key == "store"
    assert "keep_seen_ids (30 days, 0:00:00) is shorter than hub.session_expiry" in problem.reason


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("30 3 * *", "Wrong number of fields; got 4, expected 5"),
        ("@daily", "Wrong number of fields; got 1, expected 5"),
        ("*/0 * * * *", "Increment must be higher than 0"),
        ("30 3 31 2 *", "'30 3 31 2 *' never fires (no such date)"),
        ("0 4 * * 1-5", "write weekdays by name"),
    ],
)
def test_a_retention_schedule_that_is_not_a_usable_crontab_is_refused(
    tmp_path: Path, schedule: str, reason: str
) -> None:
    path = write(tmp_path, MINIMAL + f'\n[store]\nretention_schedule = "{schedule}"\n')

    [problem] = problems_of(path)

    assert (problem.file, problem.key) == (str(path), "store.retention_schedule")
    assert reason in problem.reason


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, '[site]\nname = "x"\n\n[hub]\nurl = "http://h"\nkeepalive = 5\n')

    keys = {problem.key for problem in problems_of(path)}

    assert keys == {"site.id", "hub.url", "hub.keepalive"}


def test_error_message_lists_file_key_and_reason_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'keepalive = "soon"\ncolour = 1\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path, {})

    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{path}: hub.keepalive: 'soon' is not a duration")
    assert lines[1].startswith(f"{path}: hub.colour: unknown key (allowed here: url, protocol,")


def test_duration_too_long_for_a_timedelta_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'session_expiry = "99999999999999d"\n')

    [problem] = problems_of(path)

    assert problem.key == "hub.session_expiry"
    assert "too long a duration" in problem.reason


def test_missing_file_is_reported_with_its_path_and_no_key(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"

    [problem] = problems_of(path)

    assert problem == Problem(str(path), "", "no such file")
    assert str(problem) == f"{path}: no such file"


def test_missing_relative_file_is_reported_with_its_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    [problem] = problems_of(Path("agent.toml"))

    assert str(problem) == f"agent.toml: no such file ({tmp_path / 'agent.toml'})"


def test_a_bad_token_from_the_environment_names_the_variable_not_the_file(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, MINIMAL)

    [problem] = problems_of(path, {"PLANTSYNC_API__TOKEN": "short"})

    assert problem.file == "env PLANTSYNC_API__TOKEN"
    assert problem.key == "api.token"
    assert "at least 16 characters" in problem.reason
    assert "short" not in str(problem)


def test_a_bad_site_id_is_explained_in_words_not_as_a_regex(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('id = "plant-01"', 'id = "Plant 01!"'))

    [problem] = problems_of(path)

    assert problem.key == "site.id"
    assert "letters, digits" in problem.reason
    assert "^[" not in problem.reason


def test_the_summary_names_jobcontrol_and_the_api(tmp_path: Path) -> None:
    text = MINIMAL + '[jobcontrol]\nendpoint = "opc.tcp://127.0.0.1:4841/jc/"\n'
    path = write(tmp_path, text)

    summary = summarize(load_config(path, {}), path)

    assert "jobcontrol  jobcontrol  opc.tcp://127.0.0.1:4841/jc/" in summary
    assert "api    http://127.0.0.1:8470/  no token: actions (approve, retry) are off" in summary


def test_the_sample_names_each_jobcontrol_key_once() -> None:
    lines = sample_config_path().read_text().splitlines()
    start = lines.index("# [jobcontrol]")
    block = []
    for line in lines[start + 1 :]:
        if not line.startswith("#"):
            break
        block.append(line)
    keys = [line.split("=")[0].strip("# ").strip() for line in block if " = " in line]
    assert len(keys) == len(set(keys)), keys
    text = " ".join(block).replace(",", " ").replace(";", " ").split()
    opcua_keys = ("security_mode", "security_policy", "private_key", "server_certificate")
    assert not [key for key in opcua_keys if key in text], "[[opcua]]'s keys, repeated"


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[site]\nname = "caf\xe9"\n')

    [problem] = problems_of(path)

    assert problem.key == "-"
    assert "not UTF-8" in problem.reason


def test_a_scalar_where_a_section_belongs_is_refused_as_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'hub = "mqtt://127.0.0.1"\n[site]\nid = "plant-01"\n')

    assert problems_of(path) == [Problem(str(path), "hub", "must be a table")]


def test_a_short_api_token_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[api]\ntoken = "tiny-token"\n')

    [problem] = problems_of(path)

    assert problem.key == "api"
    assert "at least 16 characters" in problem.reason
    assert "tiny-token" not in problem.reason


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"])
def test_a_loopback_api_host_needs_no_token(tmp_path: Path, host: str) -> None:
    config = load_config(write(tmp_path, MINIMAL + f'\n[api]\nhost = "{host}"\n'), {})

    assert config.api.host == host
    assert config.api.token is None


def test_an_api_token_from_the_environment_opens_the_network(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[api]\nhost = "plant-server.local"\n')
    token = "a-long-enough-api-token"  # noqa: S105 - a test value

    config = load_config(path, {"PLANTSYNC_API__TOKEN": token})

    assert config.api.token is not None
    assert config.api.token.get_secret_value() == token


# -- environment overrides -----------------------------------------------------------------


def test_environment_override_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    environ = {
        "PLANTSYNC_HUB__URL": "mqtts://hub.example.com:8883",
        "PLANTSYNC_SITE__ID": "plant-02",
        "PLANTSYNC_STORE__PATH": "/srv/plantsync/store.db",
    }

    config = load_config(path, environ)

    assert config.hub.url == "mqtts://hub.example.com:8883"
    assert config.site.id == "plant-02"
    assert config.store.path == Path("/srv/plantsync/store.db")


def test_environment_strings_convert_to_the_fields_type(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    environ = {
        "PLANTSYNC_HUB__MAX_INFLIGHT": "250",
        "PLANTSYNC_HUB__KEEPALIVE": "45s",
        "PLANTSYNC_STORE__MAX_SIZE": "2GiB",
        "PLANTSYNC_SHUTDOWN_TIMEOUT": "3s",
    }

    config = load_config(path, environ)

    assert config.hub.max_inflight == 250
    assert config.hub.keepalive == timedelta(seconds=45)
    assert config.store.max_size == 2 * 1024**3
    assert config.shutdown_timeout == timedelta(seconds=3)


def test_environment_keys_are_case_insensitive_and_nest(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)

    config = load_config(path, {"PLANTSYNC_Hub__Tls__CA_File": "/etc/ssl/ca.pem"})

    assert config.hub.tls is not None
    assert config.hub.tls.ca_file == Path("/etc/ssl/ca.pem")


def test_environment_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLANTSYNC_SITE__NAME", "From the environment")

    config = load_config(write(tmp_path, MINIMAL))

    assert config.site.name == "From the environment"


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)

    [problem] = problems_of(path, {"PLANTSYNC_HUB__KEEPALIVE": "soon"})

    assert problem.file == "env PLANTSYNC_HUB__KEEPALIVE"
    assert problem.key == "hub.keepalive"
    assert "'soon' is not a duration" in problem.reason


def test_unknown_plantsync_variable_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)

    [problem] = problems_of(path, {"PLANTSYNC_HUB__URLL": "mqtt://127.0.0.1"})

    assert problem.file == "env PLANTSYNC_HUB__URLL"
    assert problem.key == "hub.urll"
    assert problem.reason.startswith("unknown key (allowed here: url, protocol, client_id,")


@pytest.mark.parametrize(
    ("variable", "reason"),
    [
        ("PLANTSYNC_OPCUA__NAME", "lists cannot be set from the environment"),
        ("PLANTSYNC_HUB", "is a section"),
        ("PLANTSYNC_HUB__URL__HOST", "hub.url has no keys below it"),
        ("PLANTSYNC_", "unknown key"),
    ],
)
def test_environment_variable_that_names_no_single_key_is_refused(
    tmp_path: Path, variable: str, reason: str
) -> None:
    [problem] = problems_of(write(tmp_path, MINIMAL), {variable: "x"})

    assert problem.file == f"env {variable}"
    assert reason in problem.reason


def test_variables_without_the_prefix_are_ignored(tmp_path: Path) -> None:
    environ = {"PATH": "/usr/bin", "HUB__URL": "nonsense", "PLANTSYNCHUB": "x"}

    assert load_config(write(tmp_path, MINIMAL), environ).hub.url == "mqtt://127.0.0.1:1883"


# -- secrets -------------------------------------------------------------------------------


def test_secrets_never_appear_in_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, WITH_SECRETS + 'colour = "blue"\n')
    environ = {"PLANTSYNC_HUB__PASSWORD": HUB_PASSWORD, "PLANTSYNC_HUB__KEEPALIVE": "x"}

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)

    assert len(caught.value.problems) == 2
    assert HUB_PASSWORD not in str(caught.value)
    assert OPCUA_PASSWORD not in str(caught.value)


def test_a_secret_quoted_by_a_validator_is_masked(tmp_path: Path) -> None:
    endpoint = f"tcp://plantsync:{OPCUA_PASSWORD}@127.0.0.1:4840/"
    path = write(tmp_path, WITH_SECRETS.replace("opc.tcp://127.0.0.1:4840/", endpoint))

    [problem] = problems_of(path)

    assert problem.key == "opcua[0].endpoint"
    assert OPCUA_PASSWORD not in problem.reason
    assert "**********" in problem.reason


def test_credentials_in_the_hub_url_are_refused_without_quoting_them(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("mqtt://", f"mqtt://plant-01:{HUB_PASSWORD}@"))

    [problem] = problems_of(path)

    assert problem.key == "hub.url"
    assert "put credentials in username and password" in problem.reason
    assert HUB_PASSWORD not in problem.reason


def test_a_wrongly_typed_secret_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "password = 918273645\n")

    [problem] = problems_of(path)

    assert problem.key == "hub.password"
    assert "918273645" not in problem.reason


def test_secrets_never_appear_in_the_summary_or_repr(tmp_path: Path) -> None:
    path = write(tmp_path, WITH_SECRETS)

    config = load_config(path, {})

    assert config.hub.password is not None
    assert config.hub.password.get_secret_value() == HUB_PASSWORD
    for text in (summarize(config, path), repr(config), str(config), config_hash(config)):
        assert HUB_PASSWORD not in text
        assert OPCUA_PASSWORD not in text


# -- config hash ---------------------------------------------------------------------------


def test_config_hash_is_stable_across_loads() -> None:
    first = config_hash(load_config(sample_config_path(), {}))
    second = config_hash(load_config(sample_config_path(), {}))

    assert first == second
    assert len(first) == 12
    assert int(first, 16) >= 0


@pytest.mark.parametrize(
    "variable",
    [
        "PLANTSYNC_HUB__KEEPALIVE=31s",
        "PLANTSYNC_SITE__NAME=Plant 01b",
        "PLANTSYNC_STORE__MAX_SIZE=2GiB",
        f"PLANTSYNC_HUB__PASSWORD={HUB_PASSWORD}x",
    ],
)
def test_config_hash_changes_when_a_value_changes(tmp_path: Path, variable: str) -> None:
    path = write(tmp_path, WITH_SECRETS)
    name, value = variable.split("=", 1)

    assert config_hash(load_config(path, {})) != config_hash(load_config(path, {name: value}))


# -- no input makes loading fail with anything but ConfigError -----------------------------

KEYS = sorted(
    {
        name
        for section in AgentConfig.model_fields
        for name in [section, "id", "url", "name", "endpoint", "machines", "tags", "node_id"]
    }
    | {"keepalive", "max_size", "password", "security_mode", "lifetime_count", "deadband"}
)
SCALARS = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.sampled_from(
        ["10s", "99999999999999d", "mqtt://u:p@h:1", "opc.tcp://h/", "1GiB", "Sign", "plant-01"]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
DOCUMENTS = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), VALUES, max_size=6)


def to_toml_value(value: object) -> str:
    """Inline TOML: JSON's strings, numbers and arrays are valid TOML; tables go inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {to_toml_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_toml_value(item) for item in value) + "]"
    return json.dumps(value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=DOCUMENTS, environ=st.dictionaries(st.sampled_from(KEYS), SCALARS, max_size=2))
def test_any_document_either_loads_or_raises_config_error(
    tmp_path_factory: pytest.TempPathFactory,
    document: dict[str, object],
    environ: dict[str, object],
) -> None:
    path = tmp_path_factory.mktemp("random") / "agent.toml"
    path.write_text(
        "\n".join(f"{json.dumps(k)} = {to_toml_value(v)}" for k, v in document.items()),
        encoding="utf-8",
    )
    variables = {f"PLANTSYNC_HUB__{key.upper()}": str(value) for key, value in environ.items()}

    problems: list[Problem] = []
    try:
        load_config(path, variables)
    except ConfigError as error:
        problems = error.problems or [Problem("", "", "a ConfigError with no problem")]
    assert all(problem.file and problem.key and problem.reason for problem in problems)


def test_the_config_path_variable_is_not_taken_for_a_key(tmp_path: Path) -> None:
    config = load_config(sample_config_path(), {"PLANTSYNC_CONFIG": str(tmp_path / "x.toml")})
    assert config.site.id == "plant-01"

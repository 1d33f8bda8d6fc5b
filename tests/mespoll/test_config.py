"""``[[mes_poll]]`` in the config: what a plant writes loads, and a mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from plantsync.config import load_config
from tests.config.test_load import problems_of, write

HEAD = '[site]\nid = "plant-01"\n[hub]\nurl = "mqtt://127.0.0.1:1883"\n'
ENDPOINT = """
[[mes_poll]]
name = "downtime"
url = "https://mes.plant.local/api/v1/downtime"
{schedule}
message = "equipment.downtime"
records = "/data/events"
[mes_poll.cursor]
kind = "last-id"
param = "after"
field = "/id"
[mes_poll.auth]
kind = "basic"
username = "plantsync"
password = "secret"
[mes_poll.fields]
downtime_id = "/event_id"
equipment_id = "/machine"
start = "/from"
reason_code = "/code"
category = "/planned"
{extra}
"""


def _file(tmp_path: Path, schedule: str = 'interval = "30s"', extra: str = "") -> Path:
    return write(tmp_path, HEAD + ENDPOINT.format(schedule=schedule, extra=extra))


def test_an_endpoint_with_cron_and_basic_auth_loads(tmp_path: Path) -> None:
    config = load_config(_file(tmp_path, schedule='cron = "0 6,14,22 * * *"'), {})

    (endpoint,) = config.mes_poll
    assert endpoint.cron == "0 6,14,22 * * *"
    assert endpoint.auth is not None
    assert endpoint.auth.password is not None
    assert endpoint.auth.password.get_secret_value() == "secret"
    assert "secret" not in repr(endpoint)


@pytest.mark.parametrize(
    ("schedule", "extra", "key", "reason"),
    [
        (
            'interval = "30s"\ncron = "0 6 * * *"',
            "",
            "mes_poll[0]",
            "exactly one of interval or cron",
        ),
        ('cron = "0 6 * * 1"', "", "mes_poll[0].cron", "write weekdays by name"),
        ('interval = "30s"', 'end = "to"', "mes_poll[0]", "'to' is not a JSON pointer"),
        ('interval = "30s"', 'shift = "/shift"', "mes_poll[0]", "['shift'] are not fields of"),
    ],
    ids=["interval-and-cron", "weekday-number", "not-a-pointer", "unknown-field"],
)
def test_a_mistake_in_an_endpoint_names_its_key(
    tmp_path: Path, schedule: str, extra: str, key: str, reason: str
) -> None:
    [problem] = problems_of(_file(tmp_path, schedule, extra))

    assert problem.key == key
    assert reason in problem.reason


def test_a_required_field_left_unmapped_is_named(tmp_path: Path) -> None:
    text = HEAD + ENDPOINT.format(schedule='interval = "30s"', extra="").replace(
        'reason_code = "/code"\n', ""
    )

    [problem] = problems_of(write(tmp_path, text))

    assert "equipment.downtime needs ['reason_code']" in problem.reason


def test_a_timezone_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    text = HEAD.replace('id = "plant-01"', 'id = "plant-01"\ntimezone = "Europe/Atlantis"')

    [problem] = problems_of(write(tmp_path, text))

    assert problem.key == "site.timezone"
    assert "not an IANA time zone" in problem.reason

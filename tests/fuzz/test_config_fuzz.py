"""Any config file either loads or is refused with ConfigError naming the file, the key and the
reason: random text and bytes, the sample with its lines broken, and the sample with one key
given a wrong type, an out-of-range value, a misspelt sibling, or removed. Never another
exception, never a hang (every load runs under a deadline)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantsync.config import load_config, sample_config_path
from plantsync.config.model import AgentConfig
from plantsync.errors import ConfigError, Problem
from tests.fuzz.inbound import FUZZ

LOAD_DEADLINE = 5.0
"""Seconds one load may take; a loaded CI machine parses the sample in milliseconds."""

SAMPLE_TEXT = sample_config_path().read_text(encoding="utf-8")
SAMPLE: dict[str, Any] = tomllib.loads(SAMPLE_TEXT)
_loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="config-fuzz")


def load(path: Path) -> tuple[AgentConfig | None, list[Problem]]:
    """Load with no environment, within the deadline; ConfigError becomes its problems, any
    other exception propagates and fails the test."""
    future = _loader.submit(load_config, path, {})
    try:
        return future.result(timeout=LOAD_DEADLINE), []
    except ConfigError as error:
        refused = error
    assert refused.problems, "a ConfigError lists at least one problem"
    assert str(refused) == "\n".join(str(problem) for problem in refused.problems)
    return None, refused.problems


def assert_named(problems: list[Problem], path: Path) -> None:
    for problem in problems:
        assert problem.file == str(path), problem
        assert problem.key.strip(), problem
        assert problem.reason.strip(), problem
        assert "\n" not in problem.reason, problem


# ---- writing TOML: every document as top-level keys with inline values -------------------


def toml_string(text: str) -> str:
    escaped = "".join(
        "\\\\" if char == "\\" else '\\"' if char == '"' else _control(char) for char in text
    )
    return f'"{escaped}"'


def _control(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) < 0x20 or ord(char) == 0x7F else char


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_document(document: dict[str, Any]) -> str:
    return "\n".join(f"{toml_string(key)} = {toml_value(value)}" for key, value in document.items())


def write(directory: Path, text: str | bytes) -> Path:
    path = directory / "agent.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---- random and broken text ----------------------------------------------------------------

TOML_LIKE = st.text(
    alphabet=st.sampled_from(list("[]{}=\"'#.,-_ \n\t:0123456789abcdefghijklmnopqrstuvwxyz\\")),
    max_size=200,
)


@st.composite
def broken_samples(draw: st.DrawFn) -> str:
    """The sample with a few lines deleted, duplicated, cut short or spliced with junk."""
    lines = SAMPLE_TEXT.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        action = draw(st.sampled_from(["delete", "duplicate", "truncate", "splice"]))
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "truncate":
            lines[index] = lines[index][: draw(st.integers(0, max(0, len(lines[index]) - 1)))]
        else:
            cut = draw(st.integers(0, len(lines[index])))
            junk = draw(TOML_LIKE)
            lines[index] = lines[index][:cut] + junk + lines[index][cut:]
    return "\n".join(lines)


@settings(FUZZ, max_examples=300)
@given(st.one_of(st.text(max_size=300), TOML_LIKE, st.binary(max_size=200), broken_samples()))
def test_any_text_loads_or_is_refused_naming_file_key_and_reason(
    tmp_path_factory: pytest.TempPathFactory, text: str | bytes
) -> None:
    path = write(tmp_path_factory.mktemp("config"), text)

    _, problems = load(path)

    assert_named(problems, path)


# ---- the sample with one key made wrong: the problem names that key ---------------------------


def leaves(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


def tables(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from tables(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict):
                yield from tables(item, (*path, index))


# [[mes_poll]]'s query, headers, fields, values and constants are maps by design: any key is the
# name of a query parameter, header or payload field (those are checked against the message).
FREE_FORM = {"query", "headers", "fields", "values", "constants"}


def fixed(path: tuple[str | int, ...]) -> bool:
    return not (path[:1] == ("mes_poll",) and FREE_FORM & set(path[2:3]))


LEAVES = sorted(filter(fixed, leaves(SAMPLE)), key=str)
TABLES = sorted(filter(fixed, tables(SAMPLE)), key=str)
# Keys with bounds, and values outside them; key paths as the loader writes them.
OUT_OF_RANGE: list[tuple[tuple[str | int, ...], object, str]] = [
    (("hub", "max_inflight"), 0, "hub.max_inflight"),
    (("hub", "max_inflight"), 65536, "hub.max_inflight"),
    (("api", "port"), -1, "api.port"),
    (("api", "port"), 70000, "api.port"),
    (("store", "commit_batch"), 0, "store.commit_batch"),
    (("schedule", "quantity_threshold"), -1, "schedule.quantity_threshold"),
    (("opcua", 0, "keepalive_count"), 0, "opcua[0].keepalive_count"),
    (("opcua", 0, "lifetime_count"), 2, "opcua[0].lifetime_count"),
    (("opcua", 0, "lifetime_count"), 29, "opcua[0]"),  # below 3 x keepalive_count (10)
    (("opcua", 0, "machines", 0, "tags", 4, "queue_size"), 0, "opcua[0].machines[0].tags[4]"),
    (("opcua", 0, "machines", 1, "tags", 1, "deadband", "value"), -0.5, "opcua[0].machines[1]"),
    (("hub", "keepalive"), "-5s", "hub.keepalive"),
    (("hub", "keepalive"), "99999999999999999d", "hub.keepalive"),
    (("store", "max_size"), "12 parsecs", "store.max_size"),
    (("site", "id"), "plant/01", "site.id"),
    (("hub", "topic_prefix"), "plantsync/#", "hub.topic_prefix"),
    (("log", "level"), "verbose", "log.level"),
    (("opcua", 0, "security_mode"), "Encrypt", "opcua[0].security_mode"),
]
REQUIRED = [("site", "id"), ("hub", "url"), ("opcua", 0, "name"), ("opcua", 0, "endpoint")]
WRONG_TYPES = st.one_of(
    st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=2),
    st.lists(st.just([1, "x"]), min_size=1, max_size=2),
)
"""A table or an array of arrays: no key of the sample takes either where it holds a scalar."""


def dotted(path: tuple[str | int, ...]) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path)
    return text.removeprefix(".")


def get(document: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        document = document[part]
    return document


def put(document: Any, path: tuple[str | int, ...], value: object) -> None:
    get(document, path[:-1])[path[-1]] = value


@st.composite
def wrong_samples(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """(document, key path that must be named, start of the reason or '')."""
    document = copy.deepcopy(SAMPLE)
    kind = draw(st.sampled_from(["type", "range", "unknown", "missing"]))
    if kind == "type":
        path = draw(st.sampled_from(LEAVES))
        put(document, path, draw(WRONG_TYPES))
        return document, dotted(path), ""
    if kind == "range":
        path, value, named = draw(st.sampled_from(OUT_OF_RANGE))
        put(document, path, value)
        return document, named, ""
    if kind == "unknown":
        path = draw(st.sampled_from(TABLES))
        table = get(document, path)
        name = draw(
            st.from_regex(r"[a-z][a-z_]{0,11}", fullmatch=True).filter(lambda k: k not in table)
        )
        table[name] = draw(st.integers() | st.text(max_size=5))
        return document, dotted((*path, name)), "unknown key"
    path = draw(st.sampled_from(REQUIRED))
    del get(document, path[:-1])[path[-1]]
    return document, dotted(path), "required"


@settings(FUZZ, max_examples=300)
@given(wrong_samples())
def test_a_wrong_key_in_the_sample_is_refused_naming_that_key(
    tmp_path_factory: pytest.TempPathFactory, case: tuple[dict[str, Any], str, str]
) -> None:
    document, key, reason = case
    path = write(tmp_path_factory.mktemp("config"), toml_document(document))

    config, problems = load(path)

    assert config is None, f"{key} should have been refused"
    assert_named(problems, path)
    named = [p for p in problems if p.key == key or p.key.startswith((f"{key}.", f"{key}["))]
    assert named, f"no problem names {key}: {problems}"
    assert all(p.reason.startswith(reason) for p in named), named


def test_the_sample_written_back_as_inline_toml_still_loads(tmp_path: Path) -> None:
    """The writer above is faithful: without a mutation, the document loads."""
    config, problems = load(write(tmp_path, toml_document(SAMPLE)))

    assert problems == []
    assert config is not None
    assert config.opcua[0].machines[2].tags[4].browse_path == "2:lathe-1/2:temperature"


# ---- and once through the command line -------------------------------------------------------


def test_check_config_exits_non_zero_with_file_key_and_reason_on_stderr(tmp_path: Path) -> None:
    document = copy.deepcopy(SAMPLE)
    document["hub"]["max_inflight"] = 0
    document["opcua"][0]["machines"][0]["tags"][0]["nodeid"] = "ns=2;s=typo"
    path = write(tmp_path, toml_document(document))
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("PLANTSYNC_")}

    done = subprocess.run(
        [sys.executable, "-m", "plantsync", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert f"{path}: hub.max_inflight: Input should be greater than or equal to 1" in done.stderr
    assert f"{path}: opcua[0].machines[0].tags[0].nodeid: unknown key" in done.stderr

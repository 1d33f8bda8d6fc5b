"""Loading the config: TOML file, then environment overrides, then the model's validation.

Every problem is reported at once, one :class:`~plantsync.errors.Problem` per bad key, naming
the file (or the environment variable) and the dotted key path, e.g.
``agent.toml: opcua[0].machines[1].tags[2].node_id: give exactly one of node_id or browse_path``.

Environment overrides
    ``PLANTSYNC_<SECTION>__<KEY>[__<SUBKEY>]`` sets one key; a double underscore nests, names are
    case-insensitive: ``PLANTSYNC_HUB__PASSWORD``, ``PLANTSYNC_HUB__TLS__CA_FILE``,
    ``PLANTSYNC_STORE__PATH``, ``PLANTSYNC_SHUTDOWN_TIMEOUT``. Values are strings validated by the
    model like any other value (``"100"`` becomes an int). Lists (the ``[[opcua]]`` servers) are
    not overridable: edit the file. A ``PLANTSYNC_`` variable that names no key is an error, so a
    typo never falls back silently to the file's value.

Secrets never appear in a reason: pydantic's ``input`` is never printed, and the values of secret
keys are masked in any message that would quote them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import ErrorDetails, to_jsonable_python

from plantsync.config.model import AgentConfig
from plantsync.contracts.envelope import SITE_PATTERN
from plantsync.errors import ConfigError, Problem

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""The pattern of the names of OPC UA servers, machines and the Job Control server."""
ENV_PREFIX = "PLANTSYNC_"
NOT_OVERRIDES = frozenset({"PLANTSYNC_CONFIG"})
"""Variables of the command itself (the config file's path), not keys of the config."""
_MASK = "**********"
_TOML_POSITION = re.compile(r"\s*\(at (line \d+, column \d+|end of document)\)$")
_Loc = tuple[str | int, ...]
_PATTERNS = {
    SITE_PATTERN: "must be 1 to 64 characters: letters, digits, '_', '.' or '-', starting with a"
    " letter or digit (it is a topic level on the hub), e.g. 'plant-01'",
    NAME_PATTERN: "must be 1 to 64 characters: letters, digits, '_', '.' or '-', e.g. 'line-1'",
}
"""What each pattern in the config model asks for, in words (a regex is no error message)."""


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """Read ``path``, apply ``PLANTSYNC_*`` overrides from ``environ`` (default: the process
    environment) and validate; raise :class:`ConfigError` listing every problem found."""
    data = _read_toml(path)
    overrides, problems = _environment_overrides(os.environ if environ is None else environ)
    applied = _apply(data, overrides)
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        secrets = _secret_strings(data, AgentConfig)
        problems += [_problem(error, str(path), applied, secrets) for error in exc.errors()]
    if problems:
        raise ConfigError(problems)
    return config


def sample_config_path() -> Path:
    """The commented sample config shipped inside the package."""
    return Path(__file__).with_name("sample.toml")


def config_hash(config: AgentConfig) -> str:
    """A short, stable fingerprint of every value, so HQ can see which config a site runs.

    Secrets take part only through a slow, salted hash: the fingerprint is published, and a
    plain hash of a short password would let anyone who knows the rest of the file guess it.
    """
    canonical = json.dumps(
        to_jsonable_python(_hash_secrets(config.model_dump())),
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def summarize(config: AgentConfig, path: Path) -> str:
    """The few lines ``plantsync check-config PATH`` prints for a valid config (no secrets)."""
    hub, store = config.hub, config.store
    site = f"{config.site.id} ({config.site.name})" if config.site.name else config.site.id
    lines = [
        f"{path}: valid, config hash {config_hash(config)}",
        f"  site   {site}",
        f"  hub    {_without_password(hub.url)}  MQTT {hub.protocol.value}"
        f"  client id {config.client_id}  tls {'on' if hub.uses_tls else 'off'}",
        f"  store  {store.path}  cap {store.max_size.human_readable()}",
    ]
    for server in config.opcua:
        tags = sum(len(machine.tags) for machine in server.machines)
        lines.append(
            f"  opcua  {server.name}  {_without_password(server.endpoint)}"
            f"  security {server.security_mode.value}"
            f"  {len(server.machines)} machines, {tags} tags"
        )
    if not config.opcua:
        lines.append("  opcua  no servers configured")
    lines.append(_jobcontrol_line(config))
    if config.mes is not None:
        lines.append(f"  mes    {_without_password(config.mes.url)}")
    lines.append(_api_line(config))
    return "\n".join(lines)


def _jobcontrol_line(config: AgentConfig) -> str:
    jobcontrol = config.jobcontrol
    if jobcontrol is None:
        return "  jobcontrol  none configured"
    receiver = jobcontrol.job_order_receiver or "found by browsing"
    return (
        f"  jobcontrol  {jobcontrol.name}  {_without_password(jobcontrol.endpoint)}"
        f"  security {jobcontrol.security_mode.value}  receiver {receiver}"
        f"  release {jobcontrol.release_method}"
    )


def _api_line(config: AgentConfig) -> str:
    api = config.api
    token = "token set" if api.token is not None else "no token: actions (approve, retry) are off"
    return f"  api    http://{api.host}:{api.port}/  {token}"


# -- reading -------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        where = path.absolute()
        reason = f"no such file ({where})" if str(where) != str(path) else "no such file"
        raise ConfigError([Problem(str(path), "", reason)]) from exc
    except OSError as exc:
        raise ConfigError([Problem(str(path), "-", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.start})"
        raise ConfigError([Problem(str(path), "-", reason)]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        key = position[1] if position else "-"
        reason = message[: position.start()] if position else message
        raise ConfigError([Problem(str(path), key, f"TOML syntax: {reason}")]) from exc


# -- environment overrides -----------------------------------------------------------------


def _environment_overrides(
    environ: Mapping[str, str],
) -> tuple[dict[tuple[str, ...], tuple[str, str]], list[Problem]]:
    """Map each ``PLANTSYNC_*`` variable to a key path; unknown or list keys are problems."""
    overrides: dict[tuple[str, ...], tuple[str, str]] = {}
    problems: list[Problem] = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX) or variable.upper() in NOT_OVERRIDES:
            continue
        key = tuple(part.lower() for part in variable[len(ENV_PREFIX) :].split("__"))
        reason = _env_key_problem(key)
        if reason:
            problems.append(Problem(f"env {variable}", _dotted(key), reason))
        else:
            overrides[key] = (variable, environ[variable])
    return overrides, problems


def _env_key_problem(key: tuple[str, ...]) -> str | None:
    model: type[BaseModel] | None = AgentConfig
    for depth, name in enumerate(key):
        if model is None:
            return f"{_dotted(key[:depth])} has no keys below it"
        field = model.model_fields.get(name)
        if field is None:
            return f"unknown key (allowed here: {', '.join(model.model_fields)})"
        if _is_list(field.annotation):
            return "lists cannot be set from the environment; edit the config file"
        model = _submodel(field.annotation)
    if model is not None:
        return "is a section; set one of its keys with a further __KEY"
    return None


def _apply(
    data: dict[str, Any], overrides: Mapping[tuple[str, ...], tuple[str, str]]
) -> dict[_Loc, str]:
    """Write the overrides into ``data``; return the key paths set, with their variables."""
    applied: dict[_Loc, str] = {}
    for key, (variable, value) in overrides.items():
        table = data
        for name in key[:-1]:
            table = table.setdefault(name, {})
            if not isinstance(table, dict):
                break  # the file has a value where a table belongs: validation says so
        else:
            table[key[-1]] = value
            applied[key] = variable
    return applied


# -- validation errors ---------------------------------------------------------------------


def _problem(
    error: ErrorDetails, file: str, applied: Mapping[_Loc, str], secrets: set[str]
) -> Problem:
    loc = tuple(error["loc"])
    reason = _reason(error, loc)
    for key, variable in applied.items():
        if loc[: len(key)] == key:
            file = f"env {variable}"
        elif key[:-1] == loc and reason.startswith(f"{key[-1]} "):
            # A section's own check about one of its keys (api: "token must have …"): blame
            # the variable that set that key, and name the key.
            file, loc = f"env {variable}", key
    return Problem(file, _dotted(loc), _mask(reason, secrets))


def _reason(error: ErrorDetails, loc: _Loc) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        section = _section_at(loc[:-1])
        allowed = ", ".join(section.model_fields) if section else "none"
        return f"unknown key (allowed here: {allowed})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a table"
    if kind == "string_pattern_mismatch":
        pattern = str((error.get("ctx") or {}).get("pattern", ""))
        return _PATTERNS.get(pattern, f"does not have the form {pattern}")
    if kind in ("byte_size", "byte_size_unit"):
        return f"{error['msg']}; write a number and a unit: '512MB', '2GiB'"
    return error["msg"].removeprefix("Value error, ")


def _dotted(loc: _Loc) -> str:
    text = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return text.removeprefix(".") or "-"


def _section_at(loc: _Loc) -> type[BaseModel] | None:
    model: type[BaseModel] | None = AgentConfig
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue  # a list index: the list's items have the model already found
        field = model.model_fields.get(part)
        model = _submodel(field.annotation) if field else None
    return model


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The section model inside ``Tls | None``, ``list[TagConfig]`` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        model = _submodel(argument)
        if model is not None:
            return model
    return None


def _is_list(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is list:
        return True
    if origin in (Union, types.UnionType, Annotated):
        return any(_is_list(argument) for argument in get_args(annotation))
    return False


# -- secrets -------------------------------------------------------------------------------


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(a) for a in get_args(annotation))


def _secret_strings(data: object, model: type[BaseModel] | None) -> set[str]:
    """Every value in the raw data that is, or contains, a secret: to mask it in messages."""
    return set(_walk_secrets(data, model))


def _walk_secrets(data: object, model: type[BaseModel] | None) -> Iterator[str]:
    if isinstance(data, list):
        for item in data:
            yield from _walk_secrets(item, model)
    elif isinstance(data, dict):
        for name, value in data.items():
            field = model.model_fields.get(name) if model else None
            if field is not None and _is_secret(field.annotation) and isinstance(value, str):
                yield value
            else:
                yield from _walk_secrets(value, _submodel(field.annotation) if field else None)
    elif isinstance(data, str):
        password = _url_password(data)
        if password:
            yield password


def _mask(reason: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        reason = reason.replace(secret, _MASK)
    return reason


def _url_password(text: str) -> str | None:
    try:
        return urlsplit(text).password
    except ValueError:
        return None


def _without_password(url: str) -> str:
    password = _url_password(url)
    return url.replace(f":{password}@", f":{_MASK}@") if password else url


def _hash_secrets(value: object) -> object:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value().encode()
        digest = hashlib.pbkdf2_hmac("sha256", secret, b"plantsync.config_hash", 100_000)
        return f"secret:{digest.hex()}"
    if isinstance(value, dict):
        return {name: _hash_secrets(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_hash_secrets(item) for item in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value

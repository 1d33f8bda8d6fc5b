"""The hub connection settings of the HQ-side tools (``hub tail``, ``hub publish``): the
agent's own ``[hub]`` model, filled from three places, the later winning.

    --config FILE: its [hub] table ─┐
    PLANTSYNC_HUB__<KEY>[__<SUBKEY>] ┼─▶ one [hub] table ─▶ HubConfig: the agent's checks,
    flags (--broker, --protocol, …)  ┘                       defaults ("auto", 10 s, …)

So a tool reaches a broker exactly as the agent would: URL, protocol, TLS and credentials
alike. The password is never a flag (it would show in ``ps`` and the shell's history): it
comes from the file, ``PLANTSYNC_HUB__PASSWORD``, or the variable ``--password-env`` names.
Only ``[hub]`` is read from the file and only ``PLANTSYNC_HUB__*`` from the environment: the
rest of an agent's config is not the tools' business. The agent's ``client_id`` is never used:
a tool connecting with it would throw the agent off the hub.

Every problem becomes a :class:`~plantsync.errors.Problem` naming where the value came from, so
the CLI prints it on one line and exits 2.
"""

from __future__ import annotations

import argparse
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plantsync.config.model import HubConfig
from plantsync.config.types import Tls
from plantsync.errors import ConfigError, Problem

ENV_PREFIX = "PLANTSYNC_HUB__"
_SECTIONS: dict[str, type[BaseModel]] = {"tls": Tls}
_Key = tuple[str, ...]


@dataclass(frozen=True)
class HubFlags:
    """The connection flags of a hub tool; None where the flag was not given."""

    broker: str | None = None
    protocol: str | None = None
    prefix: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_verify: str | None = None

    def table(self) -> dict[_Key, object]:
        """The flags given, by key path in ``[hub]``."""
        keys: dict[_Key, object] = {
            ("url",): self.broker,
            ("protocol",): self.protocol,
            ("topic_prefix",): self.prefix,
            ("username",): self.username,
            ("password",): self.password,
            ("tls", "ca_file"): self.ca_file,
            ("tls", "cert_file"): self.cert_file,
            ("tls", "key_file"): self.key_file,
            ("tls", "verify"): self.tls_verify,
        }
        return {key: value for key, value in keys.items() if value is not None}


@dataclass
class _Table:
    """The [hub] table being filled, and where each key came from (for the problems)."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[_Key, str] = field(default_factory=dict)

    def set(self, key: _Key, value: object, source: str) -> None:
        table = self.values
        for name in key[:-1]:
            table = table.setdefault(name, {})
        table[key[-1]] = value
        self.sources[key] = source


def hub_settings(
    flags: HubFlags, config_file: Path | None, environ: Mapping[str, str]
) -> HubConfig:
    """The HubConfig from ``config_file``'s [hub], the environment and ``flags``, in that
    order; raises ConfigError with every problem found."""
    table, problems = _Table(), []
    if config_file is not None:
        problems += _from_file(table, config_file)
    problems += _from_environment(table, environ)
    for key, value in flags.table().items():
        table.set(key, value, f"--{_flag_name(key)}")
    if problems:
        raise ConfigError(problems)
    try:
        return HubConfig.model_validate(table.values)
    except ValidationError as exc:
        raise ConfigError([_problem(error, table, config_file) for error in exc.errors()]) from exc


def _from_file(table: _Table, path: Path) -> list[Problem]:
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        return [Problem(str(path), "-", f"cannot read: {exc.strerror or exc}")]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [Problem(str(path), "-", f"not a TOML file: {exc}")]
    hub = document.get("hub")
    if hub is None:
        return [Problem(str(path), "hub", "no [hub] section")]
    if not isinstance(hub, dict):
        return [Problem(str(path), "hub", "must be a table")]
    for name, value in hub.items():
        if isinstance(value, dict) and name in _SECTIONS:
            for sub, item in value.items():
                table.set((name, sub), item, str(path))
        else:
            table.set((name,), value, str(path))
    return []


def _from_environment(table: _Table, environ: Mapping[str, str]) -> list[Problem]:
    problems = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX):
            continue
        key = tuple(part.lower() for part in variable[len(ENV_PREFIX) :].split("__"))
        reason = _unknown(key)
        if reason is None:
            table.set(key, environ[variable], f"env {variable}")
        else:
            problems.append(Problem(f"env {variable}", "hub." + ".".join(key), reason))
    return problems


def _unknown(key: _Key) -> str | None:
    """Why ``key`` names no setting of [hub], or None when it does."""
    fields = HubConfig.model_fields
    if key[0] not in fields:
        return f"unknown key (allowed here: {', '.join(fields)})"
    section = _SECTIONS.get(key[0])
    if section is None:
        return None if len(key) == 1 else f"hub.{key[0]} has no keys below it"
    if len(key) != 2 or key[1] not in section.model_fields:
        return f"set one of hub.{key[0]}'s keys: {', '.join(section.model_fields)}"
    return None


def _problem(error: Any, table: _Table, config_file: Path | None) -> Problem:
    loc = tuple(str(part) for part in error["loc"])
    source = next(
        (table.sources[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in table.sources),
        str(config_file) if config_file else "settings",
    )
    reason = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing" and loc == ("url",):
        reason = "required: give --broker, --config FILE or PLANTSYNC_HUB__URL"
    elif error["type"] == "extra_forbidden":
        reason = "unknown key"
    return Problem(source, "hub." + ".".join(loc), reason)


def _flag_name(key: _Key) -> str:
    names = {
        ("url",): "broker",
        ("topic_prefix",): "prefix",
        ("password",): "password-env",
        ("tls", "verify"): "tls-verify",
    }
    return names.get(key, key[-1].replace("_", "-"))


# -- the command line ----------------------------------------------------------------------


def add_hub_options(parser: argparse.ArgumentParser) -> None:
    """The connection flags every hub tool takes."""
    group = parser.add_argument_group(
        "hub connection",
        "Default: the [hub] of --config, then PLANTSYNC_HUB__* variables; a flag wins.",
    )
    group.add_argument("--config", type=Path, default=None, help="an agent config: its [hub]")
    group.add_argument("--broker", default=None, help="mqtt://host:port or mqtts://host:port")
    group.add_argument(
        "--protocol", choices=["auto", "5", "3.1.1"], default=None, help="default: auto"
    )
    group.add_argument("--prefix", default=None, help="topic prefix; default plantsync/v1")
    group.add_argument("--username", default=None)
    group.add_argument(
        "--password-env", default=None, metavar="VAR", help="the variable holding the password"
    )
    group.add_argument("--ca-file", type=Path, default=None, help="CA bundle of the broker")
    group.add_argument("--cert-file", type=Path, default=None, help="client certificate")
    group.add_argument("--key-file", type=Path, default=None, help="its private key")
    group.add_argument("--tls-verify", choices=["full", "ca-only"], default=None)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> HubConfig:
    """The HubConfig for a tool's parsed arguments; raises ConfigError."""
    password = None
    if args.password_env is not None:
        password = environ.get(args.password_env)
        if password is None:
            problem = Problem("--password-env", "hub.password", f"{args.password_env} is not set")
            raise ConfigError([problem])
    flags = HubFlags(
        broker=args.broker,
        protocol=args.protocol,
        prefix=args.prefix,
        username=args.username,
        password=password,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        tls_verify=args.tls_verify,
    )
    return hub_settings(flags, args.config, environ)


def one_line(error: ConfigError) -> str:
    """Every problem of ``error`` on one line."""
    return "; ".join(str(problem) for problem in error.problems)

"""``plantsync opcua browse URL``: a server's variables as a ready ``[[opcua]]`` config block.

    options (security as in the config) ─▶ OpcUaClientConfig ─▶ connect ─▶ read_server_info
        ─▶ Browser.machines (the server's browse and read limits) ─▶ render ─▶ stdout (TOML)

The block is what ``plantsync check-config`` accepts: machine ids and tag names come from
browse names (characters a topic level cannot carry become ``_``; a clash gets ``-2``, ``-3``),
every tag is addressed by its node id, and a comment after it says its data type, engineering
units, EURange and whether the server keeps its history. Namespace indexes in node ids are the
server's today; the comment at the top lists its namespace URIs to check them against later.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import ValidationError

from plantsync.config.plant import OpcUaClientConfig, SecurityMode, SecurityPolicy
from plantsync.errors import LinkError, LinkMisconfigured

if TYPE_CHECKING:  # asyncua (≈0.5 s of CPU) is imported by ``browse``: every command builds
    # this parser, ``plantsync run`` included, and must not pay for it before READY
    from plantsync.drivers.common.uaserver import ServerInfo
    from plantsync.drivers.opcua_browse import FoundMachine, FoundTag

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
_INVALID = re.compile(r"[^A-Za-z0-9_.-]")


def add_parser(opcua: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``plantsync opcua browse``, beside ``opcua list|trust|reject`` (``plantcommands``)."""
    browse = opcua.add_parser(
        "browse",
        help="walk a server's address space and print a ready [[opcua]] config block",
        description="Exit 0 with the block on stdout, 1 when the server cannot be reached or"
        " nothing was found, 2 for bad options or settings the server refuses.",
    )
    browse.add_argument("url", help="opc.tcp://host:port/path")
    browse.add_argument("--depth", type=int, default=3, help="levels below Objects (default 3)")
    browse.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="GLOB",
        help="keep variables whose browse-name path matches, e.g. 'press-*/speed' (repeatable)",
    )
    browse.add_argument("--start", default=None, help="node id to start at; default Objects")
    browse.add_argument("--name", default="line-1", help="the [[opcua]] name (default line-1)")
    browse.add_argument("--security-mode", default="None", choices=[m.value for m in SecurityMode])
    browse.add_argument(
        "--security-policy", default="Basic256Sha256", choices=[p.value for p in SecurityPolicy]
    )
    browse.add_argument("--certificate", default=None)
    browse.add_argument("--private-key", default=None)
    browse.add_argument("--server-certificate", default=None)
    browse.add_argument("--username", default=None)
    browse.add_argument("--password-env", default=None, metavar="VAR")
    browse.add_argument("--timeout", default="10s", help="per request (default 10s)")
    browse.set_defaults(handler=_browse)


def _browse(args: argparse.Namespace) -> int:
    if args.depth < 1:
        print("plantsync: --depth must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    try:
        config = _client_config(args)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "options"
            print(f"plantsync: {where}: {error['msg']}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        info, machines = asyncio.run(
            browse(config, depth=args.depth, filters=args.filter, start=args.start)
        )
    except LinkMisconfigured as exc:
        print(f"plantsync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except LinkError as exc:
        print(f"plantsync: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not machines:
        print(
            "plantsync: no variables found (try a larger --depth or another --filter)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    print(render(config, info, machines, argv=sys.argv[1:]))
    return EXIT_OK


def _client_config(args: argparse.Namespace) -> OpcUaClientConfig:
    fields: dict[str, object] = {
        "name": args.name,
        "endpoint": args.url,
        "security_mode": args.security_mode,
        "security_policy": args.security_policy,
        "certificate": args.certificate,
        "private_key": args.private_key,
        "server_certificate": args.server_certificate,
        "username": args.username,
        "password": os.environ.get(args.password_env, "") if args.password_env else None,
        "request_timeout": args.timeout,
    }
    return OpcUaClientConfig.model_validate({k: v for k, v in fields.items() if v is not None})


async def browse(
    config: OpcUaClientConfig,
    *,
    depth: int = 3,
    filters: Sequence[str] = (),
    start: str | None = None,
) -> tuple[ServerInfo, list[FoundMachine]]:
    """Connect, read the server's limits, walk its address space, disconnect."""
    from asyncua import ua

    from plantsync.drivers.common.opcua import close_session, map_asyncua_exceptions, new_client
    from plantsync.drivers.common.uaserver import read_server_info
    from plantsync.drivers.opcua_browse import Browser

    with map_asyncua_exceptions(config.name, f"connecting to {config.endpoint}"):
        client = await new_client(config)
    try:
        timeout = config.request_timeout.total_seconds()
        with map_asyncua_exceptions(config.name, f"connecting to {config.endpoint}"):
            async with asyncio.timeout(timeout):
                await client.connect()
        with map_asyncua_exceptions(config.name, "browsing"):
            info = await read_server_info(client, config)
            browser = Browser(client.uaclient.session, info.limits)
            node = ua.NodeId.from_string(start) if start else None
            machines = await browser.machines(start=node, depth=depth, filters=filters)
    finally:
        await close_session(client, [])
    return info, machines


def render(
    config: OpcUaClientConfig,
    info: ServerInfo,
    machines: Sequence[FoundMachine],
    *,
    argv: Sequence[str] = (),
) -> str:
    """The ``[[opcua]]`` block, with its machines and tags, as TOML text."""
    lines = [
        f"# plantsync {' '.join(argv)}".rstrip(),
        f"# browsed {datetime.now(UTC).isoformat(timespec='seconds')}; namespaces of the server:",
        *(f"#   ns={index} {uri}" for index, uri in enumerate(info.namespaces)),
        "[[opcua]]",
        f"name = {_string(config.name)}",
        f"endpoint = {_string(config.endpoint)}",
        f"security_mode = {_string(config.security_mode.value)}",
    ]
    if config.security_mode is not SecurityMode.NONE:
        lines.append(f"security_policy = {_string(config.security_policy.value)}")
        for key in ("certificate", "private_key", "server_certificate"):
            lines.append(f"{key} = {_string(str(getattr(config, key)))}")
    if config.username is not None:
        lines += [f"username = {_string(config.username)}", 'password = "…"  # set it here']
    machine_ids = _unique((_id(machine.name) for machine in machines), 64)
    for machine, machine_id in zip(machines, machine_ids, strict=True):
        lines += ["", "[[opcua.machines]]", f"id = {_string(machine_id)}  # {machine.node_id}"]
        tag_names = _unique((_name(".".join(tag.path)) for tag in machine.tags), 64)
        for tag, name in zip(machine.tags, tag_names, strict=True):
            lines += [
                "[[opcua.machines.tags]]",
                f"name = {_string(name)}",
                f"node_id = {_string(tag.node_id)}  # {describe(tag)}",
            ]
    return "\n".join(lines)


def describe(tag: FoundTag) -> str:
    """``Double, unit °C, range 0 to 200, history`` — what the comment after a tag says."""
    parts = [tag.data_type + ("[]" if tag.value_rank >= 1 else "")]
    if tag.units:
        parts.append(f"unit {tag.units}")
    if tag.eu_range is not None:
        parts.append(f"range {tag.eu_range[0]:g} to {tag.eu_range[1]:g}")
    parts.append("history" if tag.history else "no history")
    return ", ".join(parts).replace("\n", " ")


def _string(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _id(name: str) -> str:
    """A machine id: a topic level (SITE_PATTERN), so it starts with a letter or digit."""
    cleaned = _INVALID.sub("_", name).lstrip("_.-")
    return cleaned or "machine"


def _name(name: str) -> str:
    return _INVALID.sub("_", name) or "tag"


def _unique(names: Iterable[str], limit: int) -> list[str]:
    """The names cut to ``limit`` characters, a clash made unique with ``-2``, ``-3``…"""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, number = name[:limit], 1
        while candidate in taken:
            number += 1
            suffix = f"-{number}"
            candidate = name[: limit - len(suffix)] + suffix
        taken.add(candidate)
        out.append(candidate)
    return out

"""Commands that ask the plant's systems directly, with the agent's config.

plantsync jobcontrol probe [--config PATH]   the Job Control server: namespace and version,
                                             receiver, methods offered and absent, provider
    exit 0 found; 1 the server cannot be reached; 2 the config has no [jobcontrol];
    3 the server is not the ISA-95 Job Control v2 the agent speaks (or refused us)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from plantsync.config import load_config
from plantsync.errors import LinkMisconfigured, SourceUnavailable

if TYPE_CHECKING:
    from plantsync.drivers.jobcontrol.probe import Probe

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3


if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_commands(commands: Commands, default_config: Callable[[], Path]) -> None:
    """Add ``jobcontrol probe`` to the ``plantsync`` command's subcommands."""
    jobcontrol = commands.add_parser(
        "jobcontrol", help="the ISA-95 Job Control server of the config"
    ).add_subparsers(required=True, metavar="ACTION")
    probe = jobcontrol.add_parser(
        "probe",
        help="connect and show what the agent would use",
        description="Exit 0 found; 1 the server cannot be reached; 2 no [jobcontrol] in the"
        " config; 3 not the ISA-95 Job Control v2 the agent speaks, or it refused us.",
    )
    probe.add_argument("--config", type=Path, default=default_config())
    probe.set_defaults(handler=_jobcontrol_probe)


def _jobcontrol_probe(args: argparse.Namespace) -> int:
    from plantsync.drivers.jobcontrol.probe import probe

    config = load_config(args.config)
    if config.jobcontrol is None:
        print(f"plantsync jobcontrol probe: {args.config} has no [jobcontrol]", file=sys.stderr)
        return EXIT_CONFIG
    # asyncua's own warnings (a socket already closed) would say less than our one line.
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    try:
        found = asyncio.run(probe(config.jobcontrol))
    except SourceUnavailable as exc:
        print(f"plantsync jobcontrol probe: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except LinkMisconfigured as exc:
        print(f"plantsync jobcontrol probe: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print_probe(found, sys.stdout)
    return EXIT_OK


def print_probe(found: Probe, out: TextIO) -> None:
    namespace, nodes = found.namespace, found.nodes
    version = namespace.version or "not exposed (no NamespaceMetadata)"
    published = f", published {namespace.published:%Y-%m-%d}" if namespace.published else ""
    rows = [
        ("server", found.endpoint),
        ("namespace", f"{namespace.uri} (index {namespace.index})"),
        ("version", version + published),
        ("receiver", nodes.receiver.to_string()),
        ("  offers", ", ".join(found.offered) or "no method"),
        ("  absent", ", ".join(found.absent) or "none"),
        ("  JobOrderList", nodes.job_order_list.to_string()),
        ("provider", nodes.response_provider.to_string() if nodes.response_provider else "none"),
        (
            "  JobOrderResponseList",
            nodes.job_order_response_list.to_string()
            if nodes.job_order_response_list
            else "none: no production confirmations",
        ),
    ]
    for label, value in rows:
        print(f"{label:<24}{value}", file=out)

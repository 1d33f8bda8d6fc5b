"""Commands that ask the plant's systems directly, with the agent's config.

plantsync jobcontrol probe [--config PATH]   the Job Control server: namespace and version,
                                             receiver, methods offered and absent, provider
    exit 0 found; 1 the server cannot be reached; 2 the config has no [jobcontrol];
    3 the server is not the ISA-95 Job Control v2 the agent speaks (or refused us)

plantsync opcua list [--config PATH]         every OPC UA server of the config ([[opcua]],
                                             [jobcontrol]): the certificate it is trusted by
                                             (server_certificate) against the one it presents
plantsync opcua trust NAME --thumbprint SHA1 [--config PATH]
                                             write the certificate the server presents to its
                                             server_certificate file, if its SHA-1 thumbprint
                                             is the one given (checked out of band)
plantsync opcua reject NAME [--config PATH]  move its server_certificate file aside (.rejected)
    The running agent reconnects within seconds when a server_certificate file changes; a
    server whose file is gone fails as misconfigured until one is trusted.
    exit 0 done; 1 the server cannot be reached; 2 no such server, no server_certificate key,
    or no/other thumbprint
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from plantsync.config import load_config
from plantsync.config.plant import OpcUaClientConfig
from plantsync.errors import LinkMisconfigured, SourceUnavailable

if TYPE_CHECKING:
    from plantsync.drivers.jobcontrol.probe import Probe

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3


if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_commands(commands: Commands, default_config: Callable[[], Path]) -> Commands:
    """Add ``jobcontrol probe`` and ``opcua list|trust|reject``; returns ``opcua``'s actions."""
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

    opcua = commands.add_parser(
        "opcua", help="OPC UA: browse a server, the server certificates the agent trusts"
    ).add_subparsers(required=True, metavar="ACTION")
    listing = opcua.add_parser("list", help="trusted against presented, per server")
    trust = opcua.add_parser("trust", help="trust the certificate a server presents")
    trust.add_argument("name", help="the server's name in the config ([jobcontrol]: its name)")
    trust.add_argument("--thumbprint", default=None, help="SHA-1 of the certificate, hex")
    reject = opcua.add_parser("reject", help="stop trusting a server's certificate")
    reject.add_argument("name")
    for parser, handler in ((listing, _opcua_list), (trust, _opcua_trust), (reject, _reject)):
        parser.add_argument("--config", type=Path, default=default_config())
        parser.set_defaults(handler=handler)
    return opcua


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


# ---- the OPC UA servers' certificates -----------------------------------------------------------


def _servers(args: argparse.Namespace) -> dict[str, OpcUaClientConfig]:
    config = load_config(args.config)
    servers: list[OpcUaClientConfig] = [*config.opcua]
    servers += [config.jobcontrol] if config.jobcontrol else []
    return {server.name: server for server in servers}


def _opcua_list(args: argparse.Namespace) -> int:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    for name, server in _servers(args).items():
        print(f"{name}  {server.endpoint}")
        trusted = _read(server.server_certificate) if server.server_certificate else None
        where = server.server_certificate or "no server_certificate in the config"
        print(f"  trusted    {_describe(trusted) if trusted else 'none'}  ({where})")
        try:
            presented = asyncio.run(_presented(server))
        except (SourceUnavailable, LinkMisconfigured) as exc:
            print(f"  presented  unknown: {exc}")
            continue
        for certificate in presented:
            same = trusted is not None and certificate == trusted
            print(f"  presented  {_describe(certificate)}  {'TRUSTED' if same else 'not trusted'}")
    return EXIT_OK


def _opcua_trust(args: argparse.Namespace) -> int:
    server = _servers(args).get(args.name)
    if server is None or server.server_certificate is None:
        return _refuse(args, "has no server_certificate file to write: set it in the config")
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    try:
        presented = asyncio.run(_presented(server))
    except (SourceUnavailable, LinkMisconfigured) as exc:
        print(f"plantsync opcua trust: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    wanted = (args.thumbprint or "").replace(":", "").lower()
    chosen = [c for c in presented if hashlib.sha1(c).hexdigest() == wanted]  # noqa: S324
    if not chosen:
        offered = ", ".join(_describe(c) for c in presented) or "no certificate"
        return _refuse(args, f"presents {offered}: give --thumbprint of the one to trust")
    path = server.server_certificate
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(chosen[0])
    staged.replace(path)  # whole or not at all: the agent may read it any moment
    print(f"{args.name}: trusted {_describe(chosen[0])} in {path}")
    return EXIT_OK


def _reject(args: argparse.Namespace) -> int:
    server = _servers(args).get(args.name)
    if server is None or server.server_certificate is None:
        return _refuse(args, "has no server_certificate file")
    path = server.server_certificate
    if not path.exists():
        return _refuse(args, f"trusts no certificate: {path} does not exist")
    rejected = path.with_name(path.name + ".rejected")
    path.replace(rejected)
    print(f"{args.name}: no longer trusted; the certificate is kept in {rejected}")
    return EXIT_OK


def _refuse(args: argparse.Namespace, why: str) -> int:
    print(f"plantsync opcua: {args.name!r} {why}", file=sys.stderr)
    return EXIT_CONFIG


async def _presented(server: OpcUaClientConfig) -> list[bytes]:
    from plantsync.drivers.common.opcua import map_asyncua_exceptions, presented_certificates

    with map_asyncua_exceptions(server.name, f"asking {server.endpoint} for its certificate"):
        return sorted({_leaf(blob) for blob in await presented_certificates(server)})


def _read(path: Path) -> bytes | None:
    """A certificate file as DER; None when it is missing or no certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        data = path.read_bytes()
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
        return _leaf(data)
    except (OSError, ValueError):
        return None


def _leaf(blob: bytes) -> bytes:
    """The first certificate of a DER chain (DER is self-delimiting)."""
    if len(blob) < 2 or not blob[1] & 0x80:
        return blob[: 2 + (blob[1] if len(blob) > 1 else 0)]
    size = blob[1] & 0x7F
    return blob[: 2 + size + int.from_bytes(blob[2 : 2 + size], "big")]


def _describe(der: bytes) -> str:
    from cryptography import x509

    certificate = x509.load_der_x509_certificate(der)
    thumbprint = hashlib.sha1(der).hexdigest()  # noqa: S324 - the name OPC UA tools show
    expires = f"{certificate.not_valid_after_utc:%Y-%m-%d}"
    return f"{certificate.subject.rfc4514_string()} sha1 {thumbprint} expires {expires}"

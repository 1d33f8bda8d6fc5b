"""The ``plantsync`` command.

plantsync run [--config PATH]              the service (default /etc/plantsync/agent.toml)
plantsync check-config PATH                validate; summary and exit 0, or problems and exit 2
plantsync check-config PATH --probe        also read one page of each [[mes_poll]] endpoint and
                                           print the mapped messages; exit 1 if one does not map
plantsync demo [--duration S]              simulated plant + local broker + agent
plantsync hub tail [--site S] [hub options] HQ side: print hub messages as they arrive
plantsync hub publish FILE --site S [hub options]
                                           HQ side: send a schedule, print its acks
    hub options: --config FILE (its [hub]), --broker URL, --protocol, --username,
    --password-env VAR, --ca-file, --cert-file, --key-file, --tls-verify; PLANTSYNC_HUB__*
plantsync status [--url URL] [--token-env VAR]   the running agent's links, outbox, inbox
plantsync deadletter list|retry ID|discard ID [--url URL] [--token-env VAR]
plantsync buffer inspect [--config PATH]   counts, oldest, per stream (read-only)
plantsync buffer replay --since TIME [--stream S] [--config PATH]
                                           re-send archived messages as historical
plantsync jobcontrol probe [--config PATH] the Job Control server: version, receiver, methods
plantsync opcua list|trust NAME --thumbprint SHA1|reject NAME [--config PATH]
                                           the OPC UA server certificates the agent trusts
plantsync order ORDER_ID [--config PATH] [--json]
                                           one order's timeline from the store (read-only)
plantsync opcua browse URL [--depth N] [--filter GLOB] [security options]
                                           a server's variables as a ready [[opcua]] block
plantsync version
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from plantsync import __version__
from plantsync.config import config_hash, load_config, summarize
from plantsync.config.model import AgentConfig, HubConfig
from plantsync.contracts.envelope import SITE_PATTERN
from plantsync.errors import ConfigError, HubUnavailable, LinkMisconfigured, StoreError
from plantsync.tools import opcuabrowse, plantcommands
from plantsync.tools.hubsettings import add_hub_options, one_line, settings_from_args

_T = TypeVar("_T")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG, EXIT_REFUSED = 0, 1, 2, 3
HUB_EXITS = (
    "Exit codes: 1 the hub cannot be reached or dropped the connection (a retry may pass),"
    " 2 bad settings or arguments, 3 the hub refused us (credentials, certificate, topic"
    " rights: the settings must change)."
)
DEFAULT_CONFIG = Path("/etc/plantsync/agent.toml")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print("plantsync: the configuration is invalid:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"plantsync: the store cannot be used: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plantsync", description="plant-edge sync agent")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the agent (the service)")
    run.add_argument("--config", type=Path, default=_default_config_path())
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("path", type=Path)
    check.add_argument(
        "--probe", action="store_true", help="read one page per MES endpoint, print the messages"
    )
    check.set_defaults(handler=_check_config)

    demo = commands.add_parser("demo", help="simulated plant + local broker + agent")
    demo.add_argument("--duration", type=float, default=None, help="seconds; default: until ^C")
    demo.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    demo.add_argument("--quiet", action="store_true", help="do not print the hub's messages")
    demo.set_defaults(handler=_demo)

    hub = commands.add_parser("hub", help="HQ-side tools").add_subparsers(
        required=True, metavar="TOOL"
    )
    tail = hub.add_parser(
        "tail",
        help="print hub messages as they arrive",
        description="Exit 0 after --limit messages or ^C. " + HUB_EXITS,
    )
    tail.add_argument("--site", default=None, help="one site; default: every site")
    tail.add_argument("--limit", type=int, default=None, help="stop after N messages")
    add_hub_options(tail)
    tail.set_defaults(handler=_hub_tail)

    publish = hub.add_parser(
        "publish",
        help="send a schedule message (or an alarm.ack) to a site and print its acknowledgements",
        description="Exit 0 on a final outcome (applied, rejected, failed, waiting-for-approval,"
        " duplicate), 1 when none came within --wait, 2 for a bad file. " + HUB_EXITS,
    )
    publish.add_argument("file", type=Path, help="JSON or .toml: an envelope, or type and payload")
    publish.add_argument("--site", required=True, help="the site the message is for")
    publish.add_argument("--source", default=None, help="the envelope's source; default hq:cli")
    publish.add_argument(
        "--seq",
        type=int,
        default=None,
        help="the site's down seq; default: last + 1. One not above the last is a sequence"
        " reset: the message starts the next seq_epoch (the tool says so)",
    )
    publish.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the last seq per broker host and site is kept;"
        " default $XDG_STATE_HOME/plantsync-hq (~/.local/state/plantsync-hq)",
    )
    publish.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for a final ack (default 30)"
    )
    publish.add_argument("--correlation-id", default=None, help="default: the message id")
    add_hub_options(publish)
    publish.set_defaults(handler=_hub_publish)

    _operator_commands(commands)
    opcuabrowse.add_parser(plantcommands.add_commands(commands, _default_config_path))

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=lambda _args: print(__version__) or EXIT_OK)
    return parser


def _default_config_path() -> Path:
    return Path(os.environ.get("PLANTSYNC_CONFIG", DEFAULT_CONFIG))


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.path)
    print(summarize(config, args.path))
    if args.probe:
        from plantsync.tools.probe import probe  # httpx: not on ``run``'s way to READY

        return asyncio.run(probe(config, sys.stdout))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return run_agent(config, config_hash(config))


def run_agent(config: AgentConfig, hash_: str) -> int:
    """Run the agent in the foreground until SIGTERM or SIGINT; 0 after a clean stop.

    Under systemd (``Type=notify``) it reports READY once the store is open, pings the watchdog
    while the event loop turns, and STOPPING on SIGTERM. SIGHUP does not reload the config (a
    restart is the one way to apply a changed config): it reconnects every link, which reads
    its certificates and keys again, as a changed certificate or key file does by itself.
    """
    import logging

    from plantsync.agent.logs import setup_logging
    from plantsync.app import build_agent
    from plantsync.tools.systemd import Notifier

    setup_logging(config.log.level, config.log.format, config=config)
    log = logging.getLogger("plantsync.agent")
    agent = build_agent(config, config_hash=hash_)
    notifier = Notifier.from_environment()

    def links() -> str:
        states = ", ".join(f"{name} {health.state.value}" for name, health in agent.health.items())
        return f"site {config.site.id}: {states}"

    def refuse_reload() -> None:
        log.warning("SIGHUP: the config is read only at start; restart the agent to apply it")
        agent.nudge.renew("SIGHUP: TLS material read again")

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def request_stop() -> None:
            if not stop.is_set():
                notifier.stopping()
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, request_stop)
        loop.add_signal_handler(signal.SIGHUP, refuse_reload)
        async with asyncio.TaskGroup() as tasks:
            watchdog = tasks.create_task(notifier.watch(links), name="systemd-watchdog")
            try:
                await agent.run(stop, on_ready=lambda: notifier.ready(links()))
            finally:
                watchdog.cancel()

    try:
        asyncio.run(serve())
    except BaseExceptionGroup as group:
        # A start-up failure (a port in use, a store that cannot be opened) arrives wrapped by
        # the task group; surface it so main() answers it like any other.
        known = group.subgroup((ConfigError, StoreError))
        if known is None:
            raise
        raise _first_leaf(known) from group
    return EXIT_OK


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _demo(args: argparse.Namespace) -> int:
    from plantsync.tools.demo import run_demo

    return run_demo(workdir=args.workdir, duration=args.duration, quiet=args.quiet)


def _hub_tail(args: argparse.Namespace) -> int:
    from plantsync.tools.hubtools import tail

    hub = _hub_config(args, "tail")
    if isinstance(hub, int):
        return hub
    if args.site is not None and not re.fullmatch(SITE_PATTERN, args.site):
        print(f"plantsync hub tail: --site {args.site!r} is not a site id", file=sys.stderr)
        return EXIT_CONFIG
    run = tail(hub, site=args.site, out=sys.stdout, limit=args.limit, notice=sys.stderr)
    return _hub_run("tail", run, lambda _printed: EXIT_OK)


def _hub_config(args: argparse.Namespace, tool: str) -> HubConfig | int:
    """The hub settings of a hub tool, or the exit code after one line on stderr."""
    try:
        return settings_from_args(args, os.environ)
    except ConfigError as exc:
        print(f"plantsync hub {tool}: {one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG


def _hub_run(tool: str, run: Coroutine[Any, Any, _T], exit_code: Callable[[_T], int]) -> int:
    """Run a hub tool to its exit code; a hub failure is one line on stderr and its exit code,
    never a traceback. A closed stdout (``| head``) ends the tool quietly."""
    try:
        return exit_code(asyncio.run(run))
    except LinkMisconfigured as exc:
        print(f"plantsync hub {tool}: the hub refused us: {_line(exc)}", file=sys.stderr)
        return EXIT_REFUSED
    except HubUnavailable as exc:
        print(f"plantsync hub {tool}: {_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK


def _line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _hub_publish(args: argparse.Namespace) -> int:
    from plantsync.errors import MessageRejected
    from plantsync.tools import hubtools

    hub = _hub_config(args, "publish")
    if isinstance(hub, int):
        return hub
    if not re.fullmatch(SITE_PATTERN, args.site):
        print(f"plantsync hub publish: --site {args.site!r} is not a site id", file=sys.stderr)
        return EXIT_CONFIG
    if args.seq is not None and args.seq < 1:
        print(f"plantsync hub publish: --seq {args.seq}: seqs start at 1", file=sys.stderr)
        return EXIT_CONFIG
    try:
        document = hubtools.read_message_file(args.file)
        state = hubtools.SeqState.for_message(args.state_dir, hub, args.site, document)
        last = state.last()
        message = hubtools.prepare_down_message(
            document,
            site=args.site,
            default_seq=lambda: last.seq + 1,
            seq=args.seq,
            source=args.source,
            correlation_id=args.correlation_id,
            after=last,
        )
    except (OSError, ValueError, MessageRejected) as exc:
        print(f"plantsync hub publish: {args.file}: {exc}; nothing sent", file=sys.stderr)
        return EXIT_CONFIG
    run = hubtools.publish(hub, message, out=sys.stdout, wait=args.wait, seq_state=state)
    return _hub_run("publish", run, lambda final: EXIT_FAILURE if final is None else EXIT_OK)


# ---- operator commands ------------------------------------------------------------------------


def _operator_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from plantsync.tools.operator import DEFAULT_TOKEN_ENV, DEFAULT_URL

    def api_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--url", default=DEFAULT_URL, help=f"the agent's API; {DEFAULT_URL}")
        parser.add_argument(
            "--token-env",
            default=DEFAULT_TOKEN_ENV,
            help=f"the variable holding the API token (default {DEFAULT_TOKEN_ENV})",
        )

    status = commands.add_parser("status", help="the running agent's links, outbox and inbox")
    api_options(status)
    status.set_defaults(handler=_status)

    letters = commands.add_parser("deadletter", help="dead letters of the running agent")
    actions = letters.add_subparsers(required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="newest first")
    listing.add_argument("--limit", type=int, default=100)
    api_options(listing)
    listing.set_defaults(handler=_deadletter_list)
    for action, text in (("retry", "receive it again"), ("discard", "delete it for good")):
        command = actions.add_parser(action, help=text)
        command.add_argument("id", type=int)
        api_options(command)
        command.set_defaults(handler=_deadletter_action, action=action)

    buffer = commands.add_parser("buffer", help="the store, read directly").add_subparsers(
        required=True, metavar="ACTION"
    )
    inspect = buffer.add_parser("inspect", help="counts, oldest, size, per stream (read-only)")
    inspect.add_argument("--config", type=Path, default=_default_config_path())
    inspect.set_defaults(handler=_buffer_inspect)
    replay = buffer.add_parser(
        "replay",
        help="send archived messages again, marked historical",
        description="Archived messages the hub acknowledged at or after --since go back into"
        ' the outbox with "historical": true and their id and seq unchanged; consumers'
        " de-duplicate by id. The running agent sends them within a second.",
    )
    replay.add_argument("--config", type=Path, default=_default_config_path())
    replay.add_argument("--since", required=True, help="2026-11-25T06:00:00Z, or back: 2h")
    replay.add_argument("--stream", default=None, help="one stream, e.g. order/JO-1")
    replay.set_defaults(handler=_buffer_replay)

    order = commands.add_parser(
        "order",
        help="one order's timeline: schedules received, acks, status, confirmations",
        description="Reads the store directly and read-only (like 'buffer inspect'): it works"
        " while the agent runs and while it is stopped, and needs no API token.",
    )
    order.add_argument("order_id", metavar="ORDER_ID")
    order.add_argument("--config", type=Path, default=_default_config_path())
    order.add_argument("--json", action="store_true", help="the API's JSON instead of text")
    order.set_defaults(handler=_order)


def _status(args: argparse.Namespace) -> int:
    from plantsync.tools import operator

    return _with_agent(
        args, lambda api: operator.print_status(api.get("/api/v1/status"), sys.stdout)
    )


def _deadletter_list(args: argparse.Namespace) -> int:
    from plantsync.tools import operator

    path = f"/api/v1/dead-letters?limit={int(args.limit)}"
    return _with_agent(args, lambda api: operator.print_dead_letters(api.get(path), sys.stdout))


def _deadletter_action(args: argparse.Namespace) -> int:
    def act(api: Any) -> None:
        answer = api.post(f"/api/v1/dead-letters/{int(args.id)}/{args.action}")
        if args.action == "discard":
            print(f"dead letter {args.id} discarded")
        elif answer["outcome"] == "received":
            print(f"dead letter {args.id} received again: it is in the inbox now")
        else:
            print(f"dead letter {args.id} refused again: {answer['reason']}")

    return _with_agent(args, act)


def _with_agent(args: argparse.Namespace, command: Callable[[Any], None]) -> int:
    from plantsync.tools.operator import AgentApi, AgentUnreachable

    try:
        command(AgentApi(args.url, args.token_env))
    except AgentUnreachable as exc:
        print(f"plantsync: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _buffer_inspect(args: argparse.Namespace) -> int:
    from plantsync.tools.operator import inspect_store

    config = load_config(args.config)
    try:
        inspect_store(config.store.path, sys.stdout)
    except StoreError as exc:  # the buffer's inspection names the file itself
        print(f"plantsync buffer inspect: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _order(args: argparse.Namespace) -> int:
    from plantsync.tools.operator import print_timeline

    config = load_config(args.config)
    try:
        known = print_timeline(config, args.order_id, sys.stdout, as_json=args.json)
    except StoreError as exc:
        print(f"plantsync order: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if not known:
        print(f"plantsync order: the store holds nothing about {args.order_id!r}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _buffer_replay(args: argparse.Namespace) -> int:
    from plantsync.tools.operator import ProgressBar, parse_since, replay_archive

    config = load_config(args.config)
    try:
        since = parse_since(args.since)
    except ValueError as exc:
        print(f"plantsync buffer replay: --since {exc}", file=sys.stderr)
        return EXIT_CONFIG
    bar = ProgressBar(sys.stderr)
    replayed, found = asyncio.run(replay_archive(config, since, args.stream, bar))
    bar.done()
    print(f"{replayed} of {found} archived messages queued again as historical")
    return EXIT_OK if replayed == found else EXIT_FAILURE

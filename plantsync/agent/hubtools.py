"""Tools for the HQ side of the hub; first of them ``plantsync hub tail``.

``tail`` prints one readable line per message under ``<prefix>/<site>/#`` (or every site):

    12:03:04.512 plant-01 machine.state machine/press-1 #42 speed=12.5 state=Executing
    12:03:05.001 plant-01 status online 0.1.0 (connected)
    12:03:05.230 plantsync/v1/plant-01/other <17 bytes>

Anything that is not a plantsync message gets the raw fallback line (topic and size): the tool
is for looking at a live hub, so it never fails on what it reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from datetime import datetime
from typing import Any, TextIO

from plantsync.config.model import HubConfig
from plantsync.drivers.mqtt import HubConnection

_MAX_VALUE_CHARS = 40


def format_message(topic: str, payload: bytes) -> str:
    """One line for a message from the hub, prefixed with the local time it is printed."""
    now = datetime.now().strftime("%H:%M:%S.%f")[:-3]  # a console reads local time
    return f"{now} {describe(topic, payload)}"


def describe(topic: str, payload: bytes) -> str:
    """The message without the time: an envelope, a site status, or ``topic <n bytes>``."""
    document = _json_object(payload)
    if document is not None:
        if document.get("type") == "site.status":
            line = _status_line(document)
        elif isinstance(document.get("payload"), dict) and isinstance(document.get("type"), str):
            line = _envelope_line(document)
        else:
            line = None
        if line is not None:
            return line
    return f"{topic} <{len(payload)} bytes>"


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _status_line(document: dict[str, Any]) -> str | None:
    site, state = document.get("site"), document.get("state")
    if not isinstance(site, str) or not isinstance(state, str):
        return None
    reason = document.get("reason")
    line = f"{site} status {state} {document.get('version', '?')}"
    return f"{line} ({reason})" if isinstance(reason, str) else line


def _envelope_line(document: dict[str, Any]) -> str:
    parts = [str(document.get("site", "?")), str(document["type"])]
    if "stream" in document:
        parts.append(str(document["stream"]))
    if "seq" in document:
        parts.append(f"#{document['seq']}")
    if document.get("historical") is True:
        parts.append("(historical)")
    parts.append(_payload_summary(document["payload"]))
    return " ".join(part for part in parts if part)


def _payload_summary(payload: dict[str, Any]) -> str:
    """``tag=value`` pairs for machine.state, else the payload's top-level scalar fields."""
    values = payload.get("values")
    if isinstance(values, list) and all(isinstance(item, dict) for item in values):
        pairs = [(str(item.get("tag", "?")), item.get("value")) for item in values]
        if payload.get("kind") == "snapshot":
            pairs.insert(0, ("kind", "snapshot"))
    else:
        pairs = [
            (key, value) for key, value in payload.items() if not isinstance(value, dict | list)
        ]
    return " ".join(f"{key}={_short(value)}" for key, value in pairs)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"


async def tail(
    config: HubConfig,
    *,
    site: str | None,
    out: TextIO,
    limit: int | None = None,
    idle_timeout: float | None = None,
) -> int:
    """Print the hub's messages for ``site`` (every site when None) until ``limit`` messages,
    ``idle_timeout`` seconds without one, or cancellation; return how many were printed.

    Subscribes with a clean session at QoS 1, so it leaves nothing queued on the broker.
    Raises HubUnavailable / LinkMisconfigured when the hub cannot be reached or refuses it.
    """
    topic_filter = f"{config.topic_prefix}/{site or '+'}/#"
    client_id = f"plantsync-tail-{os.getpid()}-{id(out):x}"
    loop = asyncio.get_running_loop()
    printed = 0
    async with HubConnection(config, client_id=client_id, clean_start=True) as hub:
        await hub.subscribe([(topic_filter, 1)])
        if limit is not None and limit <= 0:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle_timeout) as idle:
                async for message in hub.messages():
                    print(format_message(message.topic, message.payload), file=out, flush=True)
                    printed += 1
                    if printed == limit:
                        break
                    if idle_timeout is not None:
                        idle.reschedule(loop.time() + idle_timeout)
    return printed

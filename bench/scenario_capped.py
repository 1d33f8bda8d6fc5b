"""The OPC UA source against a server that caps notifications per message (issue 15, item 4).

    asyncua server + sim.capped (cap 10 or 300) ── N items, every item changes every cycle ──▶
    OpcUaSource(max_publish_requests = 1 | default) ──▶ values received / values produced

A server keeps only the newest value of an item it could not send yet (queue size 1 here, as a
plant server under pressure does), so what is not fetched in time is gone: "delivered" is the
share of produced values the source received. ``max_publish_requests = 1`` is asyncua's own
behaviour (one request in flight), the agent's before this change; the default keeps more in
flight while the server answers MoreNotifications. ``uncapped`` is the same load without a cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

from asyncua import ua
from asyncua.common.node import Node

from bench.report import Figure
from plantsync.config.plant import MachineConfig, OpcUaServerConfig, TagConfig
from plantsync.drivers.opcua import OpcUaSource
from plantsync.sim.capped import server_of_variables
from tests.fixtures.opcua import free_port

DEFAULT_MAX = OpcUaServerConfig.model_fields["max_publish_requests"].default


def run(quick: bool) -> list[Figure]:
    seconds = 3.0 if quick else 10.0
    cases = [(1_000, 10), (1_000, 300)] if quick else [(1_000, 10), (1_000, 300), (5_000, 300)]
    figures: list[Figure] = []
    for rate, cap in cases:
        items = rate // 10  # every item changes every 100 ms cycle
        uncapped = asyncio.run(_delivered(items, None, DEFAULT_MAX, seconds))
        one = asyncio.run(_delivered(items, cap, 1, seconds))
        many = asyncio.run(_delivered(items, cap, DEFAULT_MAX, seconds))
        case = f"{items} items @ {rate}/s, cap {cap}"
        print(f"   {case}: uncapped {uncapped:.1%}, 1 request {one:.1%}, default {many:.1%}")
        figures.append(
            Figure(
                "capped",
                case,
                "delivered",
                "%",
                round(many * 100, 1),
                ceiling=round(uncapped * 100, 1),
                ceiling_name="the same load uncapped",
                target="≥ 95 % at 1,000/s, cap 10" if (rate, cap) == (1_000, 10) else "",
                met=many >= 0.95 if (rate, cap) == (1_000, 10) else None,
                notes={"one_request_in_flight_percent": round(one * 100, 1)},
            )
        )
    return figures


async def _delivered(items: int, cap: int | None, max_requests: int, seconds: float) -> float:
    async with server_of_variables(free_port(), items, cap=cap) as (endpoint, variables):
        return await _measure(endpoint, variables, max_requests, seconds)


async def _measure(
    endpoint: str, variables: list[Node], max_requests: int, seconds: float
) -> float:
    tags = [
        TagConfig(name=f"v{n}", node_id=v.nodeid.to_string(), queue_size=1)
        for n, v in enumerate(variables)
    ]
    config = OpcUaServerConfig(
        name="bench",
        endpoint=endpoint,
        publishing_interval=timedelta(milliseconds=100),
        max_publish_requests=max_requests,
        machines=[MachineConfig(id="m", tags=tags)],
    )
    async with OpcUaSource(config) as source:
        received = 0
        readings = source.readings()
        await anext(readings)  # initial values start arriving: the subscription is up

        async def count() -> None:
            nonlocal received
            async for batch in readings:
                received += sum(1 for r in batch if isinstance(r.value, int) and r.value > 0)

        counting = asyncio.create_task(count())
        produced = await _produce(variables, seconds)
        await asyncio.sleep(1.0)  # what the server still holds may come
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
    return received / produced if produced else 0.0


async def _produce(variables: list[Node], seconds: float) -> int:
    """Change every variable every 100 ms for ``seconds``; return how many values were set."""
    produced, value, deadline = 0, 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        value += 1
        started = time.monotonic()
        for variable in variables:
            await variable.write_value(ua.Variant(value, ua.VariantType.Int64))
        produced += len(variables)
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
    return produced

"""Helpers for reading what an OpcUaSource delivers, always within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from plantsync.drivers.base import Reading

WAIT = 5.0
"""Seconds any single expectation may take; generous against a loaded CI machine."""


async def collect_until_complete(
    batches: AsyncIterator[list[Reading]], expected: int
) -> dict[tuple[str, str], Reading]:
    """Latest reading per (machine, tag) once ``expected`` distinct tags have been seen."""
    seen: dict[tuple[str, str], Reading] = {}
    async with asyncio.timeout(WAIT):
        while len(seen) < expected:
            for reading in await anext(batches):
                seen[(reading.machine_id, reading.tag)] = reading
    return seen


async def next_reading(batches: AsyncIterator[list[Reading]], machine: str, tag: str) -> Reading:
    """The next reading of one tag, skipping everything else."""
    async with asyncio.timeout(WAIT):
        while True:
            for reading in await anext(batches):
                if (reading.machine_id, reading.tag) == (machine, tag):
                    return reading


async def drain(batches: AsyncIterator[list[Reading]]) -> None:
    """Read until the iterator raises (the point of the caller's test) or WAIT runs out."""
    async with asyncio.timeout(WAIT):
        async for _ in batches:
            pass

"""The OPC UA source of the ingest benchmarks: an asyncua server in its own process that changes
N Double items at R changes/s in aggregate, on command.

    python -m bench.opcua_source --port 4840 --items 10000 [--tags-per-machine 100]

Items are ``ns=2;s=m0000.t000`` …: machine ``m<i // tags>``, tag ``t<i % tags>``. An item's
value is its change counter (1, 2, 3, … across runs), so a consumer can tell loss from
duplicates; the SourceTimestamp is the moment of the write, so a consumer can measure latency.

Line protocol on stdin / stdout (stdout carries nothing else):

    ← ready
    → run RATE SECONDS      change items round-robin at RATE/s for SECONDS
    ← done PRODUCED START END FIRST_COUNTER   (epoch seconds; the first counter of this run)
    → quit
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import UTC, datetime
from typing import cast

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.attribute_ids import AttributeIds

NAMESPACE = "urn:plantsync:bench-source"
TICK = 0.005
"""Seconds between write bursts; each burst catches up with RATE x elapsed."""


def item_name(index: int, tags_per_machine: int) -> tuple[str, str]:
    """The (machine id, tag name) of item ``index``."""
    return f"m{index // tags_per_machine:04d}", f"t{index % tags_per_machine:03d}"


def node_id(index: int, tags_per_machine: int) -> str:
    machine, tag = item_name(index, tags_per_machine)
    return f"ns=2;s={machine}.{tag}"


class Source:
    """The server and the round-robin writer."""

    def __init__(self, port: int, items: int, tags_per_machine: int) -> None:
        self.port, self.items, self.tags = port, items, tags_per_machine
        self.server = Server()
        self.node_ids: list[ua.NodeId] = []
        self.counter = 0  # changes made so far, over all runs; item = counter % items

    async def build(self) -> None:
        await self.server.init()
        self.server.set_endpoint(f"opc.tcp://127.0.0.1:{self.port}/bench/")
        self.server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        namespace = await self.server.register_namespace(NAMESPACE)
        assert namespace == 2, namespace
        # One folder per machine: asyncua's address space checks a parent's references
        # linearly, so 50,000 variables under one folder would take minutes to create.
        folder = None
        for index in range(self.items):
            machine, tag = item_name(index, self.tags)
            if index % self.tags == 0:
                folder = await self.server.nodes.objects.add_folder(f"ns=2;s={machine}", machine)
            assert folder is not None
            variable = await folder.add_variable(
                node_id(index, self.tags), f"2:{tag}", ua.Variant(0.0, ua.VariantType.Double)
            )
            self.node_ids.append(variable.nodeid)

    async def run(self, rate: float, seconds: float) -> tuple[int, float, float, int]:
        """Change items at ``rate`` for ``seconds``; returns what was produced and when."""
        first = self.counter + 1
        start = time.time()
        produced = 0
        write = self.server.iserver.aspace.write_attribute_value
        value_attribute = AttributeIds.Value
        # A burst never exceeds four ticks' worth: when the server cannot keep up, it falls
        # behind the rate (the run reports what it achieved) but keeps answering its clients
        # between bursts, instead of stalling them into timeouts.
        burst = max(int(rate * TICK * 4), 50)
        while (now := time.time()) < start + seconds:
            due = min(int(rate * (now - start)) - produced, burst)
            stamp = cast(ua.DateTime, datetime.now(UTC))  # asyncua annotates its subclass
            for _ in range(max(due, 0)):
                self.counter += 1
                item = (self.counter - 1) % self.items
                value = ua.DataValue(
                    ua.Variant(float((self.counter - 1) // self.items + 1), ua.VariantType.Double),
                    SourceTimestamp=stamp,
                    ServerTimestamp=stamp,
                )
                await write(self.node_ids[item], value_attribute, value)
            produced += max(due, 0)
            await asyncio.sleep(TICK)
        return produced, start, time.time(), first


async def serve(arguments: argparse.Namespace) -> None:
    source = Source(arguments.port, arguments.items, arguments.tags_per_machine)
    await source.build()
    async with source.server:
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                return
            if line[0] == "run":
                produced, start, end, first = await source.run(float(line[1]), float(line[2]))
                print(f"done {produced} {start} {end} {first}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--tags-per-machine", type=int, default=100)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

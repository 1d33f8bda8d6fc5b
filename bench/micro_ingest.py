"""CPU per change of each step of the agent's ingest path, in one process, no I/O.

    python -m bench.micro_ingest [--changes 1000] [--tags-per-machine 100]

A PublishResponse of ``--changes`` Double data changes (what the OPC UA server sends every
publishing interval) goes through the agent's own code: asyncua's decoding (with both
timestamps, and with the source timestamp only), ``OpcUaSource._on_publish`` (readings), and
``Pipeline._records`` (machine.state messages, JSON). Best of several repeats, in µs per
change: the floor under what bench/profile_ingest.py sees in the running agent. The hub and
the store cost per message, not per change; the ingest scenario measures them end to end.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

from asyncua import ua
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from bench.opcua_source import item_name, node_id
from plantsync.agent.pipeline import Pipeline, _Batch
from plantsync.agent.sequencer import Sequencer
from plantsync.buffer.memory import MemoryOutbox
from plantsync.config.plant import OpcUaServerConfig
from plantsync.contracts import Topics
from plantsync.drivers.base import Reading
from plantsync.drivers.opcua import OpcUaSource
from plantsync.drivers.opcua_items import Item


def publish_response(changes: int, *, server_timestamp: bool) -> bytes:
    now = cast(ua.DateTime, datetime.now(UTC))
    items = [
        ua.MonitoredItemNotification(
            ClientHandle=handle,
            Value=ua.DataValue(
                ua.Variant(float(handle), ua.VariantType.Double),
                SourceTimestamp=now,
                ServerTimestamp=now if server_timestamp else None,
            ),
        )
        for handle in range(changes)
    ]
    message = ua.NotificationMessage(
        SequenceNumber=1,
        PublishTime=now,
        NotificationData=[ua.DataChangeNotification(MonitoredItems=items)],
    )
    parameters = ua.PublishResult(SubscriptionId=1, NotificationMessage=message)
    return bytes(struct_to_binary(ua.PublishResponse(Parameters=parameters)))


def source(changes: int, tags_per_machine: int) -> OpcUaSource:
    machines: dict[str, list[dict[str, str]]] = {}
    for index in range(changes):
        machine, tag = item_name(index, tags_per_machine)
        machines.setdefault(machine, []).append(
            {"name": tag, "node_id": node_id(index, tags_per_machine)}
        )
    config = OpcUaServerConfig.model_validate(
        {
            "name": "src",
            "endpoint": "opc.tcp://127.0.0.1:4840/",
            "machines": [{"id": machine, "tags": tags} for machine, tags in machines.items()],
        }
    )
    opcua = OpcUaSource(config, queue_readings=1_000_000_000)
    opcua._items = [
        Item(item.machine_id, item.tag, ua.NodeId(ua.Int32(1))) for item in opcua._items
    ]
    return opcua


def _decode(data: bytes) -> ua.PublishResponse:
    return struct_from_binary(ua.PublishResponse, Buffer(data))


def per_change(step: Callable[[], object], changes: int) -> float:
    """Best of nine repeats, µs per change."""
    return min(timeit.repeat(step, number=5, repeat=9)) / 5 / changes * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--tags-per-machine", type=int, default=100)
    args = parser.parse_args()
    changes = args.changes
    for label, server_timestamp in (("both timestamps", True), ("source timestamp", False)):
        data = publish_response(changes, server_timestamp=server_timestamp)
        cost = per_change(functools.partial(_decode, data), changes)
        print(f"decode, {label:<16}  {cost:6.2f} µs/change  {len(data) / changes:5.1f} B/change")
    response = _decode(data)
    opcua = source(changes, args.tags_per_machine)
    readings = per_change(functools.partial(opcua._on_publish, response.Parameters), changes)
    print(f"readings (_on_publish)           {readings:6.2f} µs/change")
    batch: list[Reading] = opcua._queue.get_nowait()
    pipeline = Pipeline(
        MemoryOutbox(max_size_bytes=1 << 30), Topics("plantsync/v1", "bench"), Sequencer({})
    )
    numbers = itertools.count(1)
    records = per_change(
        lambda: pipeline._records([_Batch("src", batch)], lambda _: next(numbers)), changes
    )
    print(f"messages (Pipeline._records)     {records:6.2f} µs/change")


if __name__ == "__main__":
    main()

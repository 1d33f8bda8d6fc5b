"""The ingest ceiling: a no-frills OPC UA → MQTT bridge with no durability.

    python -m bench.bridge --endpoint opc.tcp://127.0.0.1:4840/bench/ --broker-port 1883 \
        --items 10000 [--tags-per-machine 100]

What anyone would write first: asyncua's high-level subscription (100 ms publishing interval,
queue size 10 like plantsync's default) and a data-change handler that publishes every change as
its own QoS 1 message through paho's own network thread (in-flight window 100, unbounded
in-memory queue). No store, no batching, no sequence numbers: whatever is in memory is lost on
a crash. Payload: ``{"item": "m0000.t000", "value": 3.0, "source_time": <Unix seconds>}``.

Prints ``ready`` once every item is monitored; runs until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC
from typing import Any

import paho.mqtt.client as mqtt
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from paho.mqtt.enums import CallbackAPIVersion

from bench.opcua_source import node_id

PUBLISHING_INTERVAL_MS = 100
QUEUE_SIZE = 10


class Handler:
    """asyncua's data-change handler: one MQTT publish per change."""

    def __init__(self, mqtt_client: mqtt.Client) -> None:
        self.mqtt = mqtt_client

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        item = str(node.nodeid.Identifier)
        stamp = data.monitored_item.Value.SourceTimestamp
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)  # OPC UA DateTime is UTC
        payload = {"item": item, "value": value, "source_time": stamp.timestamp()}
        self.mqtt.publish(f"bridge/{item}", json.dumps(payload), qos=1)


async def bridge(arguments: argparse.Namespace) -> None:
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bridge")
    publisher.max_inflight_messages_set(100)
    publisher.max_queued_messages_set(0)
    publisher.connect("127.0.0.1", arguments.broker_port)
    publisher.loop_start()
    # The watchdog tied to the request timeout, as plantsync does: asyncua's default (1 s)
    # declares a busy server dead while 50,000 items are being created, and never recovers.
    async with Client(arguments.endpoint, timeout=30, watchdog_intervall=30) as client:
        subscription = await client.create_subscription(PUBLISHING_INTERVAL_MS, Handler(publisher))
        nodes = [
            client.get_node(node_id(index, arguments.tags_per_machine))
            for index in range(arguments.items)
        ]
        for start in range(0, len(nodes), 1000):
            await subscription.subscribe_data_change(
                nodes[start : start + 1000],
                attr=AttributeIds.Value,
                queuesize=QUEUE_SIZE,
            )
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
    publisher.loop_stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--broker-port", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--tags-per-machine", type=int, default=100)
    # asyncua logs a traceback every second once its publish loop has lost the server; the
    # consumer's count tells that story.
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(bridge(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Messages per second through the whole agent path: readings → pipeline → SQLite outbox
(synchronous=FULL) → uplink → Mosquitto (QoS 1, PUBACK) → a consumer in another process.

    .venv/bin/python bench/bench_pipeline.py [--messages 50000] [--machines 100]

The consumer is a separate process (plain paho) so it does not share the agent's event loop.
Prints the agent's figure and, in the same run, raw paho QoS 1 publishing to the same broker
(no durability, no event loop): the ceiling. Not run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from plantsync.agent.localbroker import Mosquitto, free_port
from plantsync.agent.pipeline import Pipeline
from plantsync.agent.supervisor import LinkHealth
from plantsync.agent.uplink import Uplink
from plantsync.buffer.sqlite import SqliteOutbox
from plantsync.config.model import HubConfig
from plantsync.contracts import Quality, Topics
from plantsync.drivers.base import Reading
from plantsync.drivers.mqtt import HubConnection

CONSUMER = """
import sys, time, paho.mqtt.client as mqtt
expected, port, topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count, first = 0, None
def on_message(client, userdata, message):
    global count, first
    first = first or time.time()
    count += 1
    if count >= expected:
        print(f"{first} {time.time()}", flush=True)
        client.disconnect()
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-consumer")
client.on_message = on_message
client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
client.connect("127.0.0.1", port)
print("ready", flush=True)
client.loop_forever()
"""

RAW = """
import sys, time, paho.mqtt.client as mqtt
count, port = int(sys.argv[1]), int(sys.argv[2])
acked = 0
def on_publish(client, userdata, mid, rc, props):
    global acked
    acked += 1
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-raw")
client.max_inflight_messages_set(100)
client.max_queued_messages_set(0)
client.on_publish = on_publish
client.connect("127.0.0.1", port)
client.loop_start()
payload = b"x" * 300
start = time.time()
for n in range(count):
    client.publish("bench/raw", payload, qos=1)
while acked < count:
    time.sleep(0.001)
print(count / (time.time() - start))
client.loop_stop()
"""


def readings(machines: int, step: int) -> list[Reading]:
    now = datetime.now(UTC)
    return [
        Reading(f"m{index}", "speed", float(step), Quality.GOOD, 0, now)
        for index in range(machines)
    ]


async def agent_path(
    broker: Mosquitto, store: Path, messages: int, machines: int, window: int = 100
) -> float:
    topics = Topics("bench", "site")
    consumer = subprocess.Popen(  # noqa: ASYNC220 - started once, before timing
        [sys.executable, "-c", CONSUMER, str(messages), str(broker.port), "bench/site/#"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert consumer.stdout is not None
    assert consumer.stdout.readline().strip() == "ready"
    outbox = await SqliteOutbox.open(store, max_size_bytes=1 << 34)
    pipeline = Pipeline(outbox, topics)
    await pipeline.start()
    uplink = Uplink(
        outbox, LinkHealth("hub"), wakeup=pipeline.committed, max_inflight=window, stall_timeout=30
    )
    stopping = asyncio.Event()
    hub = HubConfig(url=broker.url, keepalive=timedelta(seconds=30))
    async with HubConnection(hub, client_id="bench-agent") as connection:
        writer = asyncio.create_task(pipeline.run())
        sender = asyncio.create_task(uplink.serve(connection, stopping))
        start = time.time()
        for step in range(messages // machines):
            await pipeline.submit("bench", readings(machines, step))
        await pipeline.close()
        await writer
        enqueued = time.time()
        line = await asyncio.to_thread(consumer.stdout.readline)
        stopping.set()
        await sender
    await outbox.close()
    consumer.wait(10)
    _first, last = (float(part) for part in line.split())
    print(f"  enqueue (pipeline → outbox, durable): {messages / (enqueued - start):,.0f} msgs/s")
    return messages / (last - start)


def raw_paho(broker: Mosquitto, messages: int) -> float:
    output = subprocess.run(
        [sys.executable, "-c", RAW, str(messages), str(broker.port)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return float(output.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--window", type=int, default=100, help="hub.max_inflight")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        with Mosquitto(root / "broker", port=free_port(), persistence=False) as broker:
            ceiling = raw_paho(broker, args.messages)
            agent = asyncio.run(
                agent_path(broker, root / "store.db", args.messages, args.machines, args.window)
            )
    print(f"  end to end (readings → hub consumer):  {agent:,.0f} msgs/s")
    print(f"  ceiling, raw paho QoS 1 (no store):    {ceiling:,.0f} msgs/s")
    print(f"  ratio: {agent / ceiling:.2f}")


if __name__ == "__main__":
    main()

"""The hub-side consumer of the ingest benchmarks: counts OPC UA changes, not messages.

    python -m bench.ingest_consumer --port P --topic '#'

bench/consumer.py counts envelopes; this one opens them. Every tag value that arrives is one
change of one item (``m0000.t000``) whose value is the item's change counter (see
bench/opcua_source.py), so it can tell a loss from a duplicate, and whose source timestamp gives
the latency from the OPC UA write to hub receipt. It understands three payloads:

    plantsync     machine.state envelope: payload.values[] of {tag, value, source_time}
    bridge        {"item": "m0000.t000", "value": 3.0, "source_time": 1700000000.123}
    Node-RED      {"item": "ns=2;s=m0000.t000", "value": 3, "source_time": "2024-…Z"}

Line protocol on stdin / stdout (plain paho in its own process, QoS 1 subscription):

    ← ready
    → start T       count changes whose source time is ≥ T (Unix seconds); forget the rest
    → report        ← one JSON line (see ``Tally.report``)
    → quit
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from array import array
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Tally:
    """Changes seen since ``start``: distinct, duplicates, latencies, arrivals per second."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset(float("inf"))

    def reset(self, start: float) -> None:
        with self.lock:
            self.start = start
            self.items: dict[str, bytearray] = {}
            self.received = self.distinct = self.messages = 0
            self.last = 0.0  # when the last distinct change arrived
            self.latencies = array("d")
            self.arrivals: dict[int, int] = {}  # whole second → distinct changes arrived

    def add(self, payload: bytes | bytearray) -> None:
        now = time.time()
        try:
            changes = list(_changes(json.loads(payload)))
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.messages += 1
            for item, counter, source_time in changes:
                if source_time >= self.start:
                    self._count(item, counter, now - source_time, int(now))

    def _count(self, item: str, counter: int, latency: float, second: int) -> None:
        self.received += 1
        seen = self.items.get(item)
        if seen is None:
            seen = self.items[item] = bytearray()
        if counter >= len(seen):
            seen.extend(bytes(counter + 64 - len(seen)))
        if seen[counter]:
            return  # a duplicate: same item, same change
        seen[counter] = 1
        self.distinct += 1
        self.latencies.append(latency)
        self.last = time.time()
        self.arrivals[second] = self.arrivals.get(second, 0) + 1

    def report(self) -> dict[str, Any]:
        with self.lock:
            ordered = sorted(self.latencies)

            def at(q: float) -> float:
                return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

            return {
                "received": self.received,
                "distinct": self.distinct,
                "duplicates": self.received - self.distinct,
                "messages": self.messages,
                "p50": at(0.5),
                "p99": at(0.99),
                "max": ordered[-1] if ordered else 0.0,
                "last": self.last,
                "arrivals": {str(k): v for k, v in sorted(self.arrivals.items())},
            }


def _changes(document: dict[str, Any]) -> list[tuple[str, int, float]]:
    if document.get("type") == "machine.state":
        machine = document["payload"]["machine_id"]
        return [
            (f"{machine}.{value['tag']}", int(value["value"]), _seconds(value["source_time"]))
            for value in document["payload"]["values"]
        ]
    item = str(document["item"]).rsplit("s=", 1)[-1]
    return [(item, int(document["value"]), _seconds(document["source_time"]))]


def _seconds(moment: float | str) -> float:
    if isinstance(moment, int | float):
        return float(moment)
    return datetime.fromisoformat(moment.replace("Z", "+00:00")).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", default="#")
    args = parser.parse_args()
    tally = Tally()
    subscribed = threading.Event()
    # A persistent session, reconnecting at once: through a broker outage (the peer scenario)
    # what was published meanwhile waits at the broker for us, so a loss is the subject's.
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-ingest-{args.port}", clean_session=False
    )
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.on_message = lambda _c, _u, message: tally.add(message.payload)
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(args.topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    if not subscribed.wait(10):
        sys.exit("the ingest consumer could not subscribe")
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] == "start":
            tally.reset(float(words[1]))
        elif words[0] == "report":
            print(json.dumps(tally.report()), flush=True)
    client.loop_stop()
    client.disconnect()


if __name__ == "__main__":
    main()

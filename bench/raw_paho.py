"""The MQTT ceiling: raw paho QoS 1 publishing, PUBACKs counted, no store, no event loop.

    python -m bench.raw_paho --port P --count N [--window 100] [--topic T] [--payload-bytes 300]

One thread drives ``client.loop()`` and publishes from the same thread; paho's own in-flight
limit is off and the application keeps at most ``--window`` publishes un-acknowledged; the
socket has TCP_NODELAY. That is the fastest setup docs/measured.md found (≈ 23k msgs/s here). Prints
one JSON line: ``{"count": N, "seconds": …, "rate": …}`` from the first publish to the last
PUBACK. Payloads carry ``bench.common.CEILING_MARKER`` so a consumer can count them apart.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MARKER = b'"ceiling":true'


def _payload(size: int) -> bytes:
    head = b'{"ceiling":true,"pad":"'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def _no_delay(_client: mqtt.Client, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--topic", default="bench/ceiling")
    parser.add_argument("--payload-bytes", type=int, default=300)
    args = parser.parse_args()
    acked = 0

    def on_publish(*_: Any) -> None:
        nonlocal acked
        acked += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-raw-{args.port}")
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_socket_open = _no_delay
    client.connect("127.0.0.1", args.port)
    while not client.is_connected():
        client.loop(timeout=0.1)
    payload = _payload(args.payload_bytes)
    sent = 0
    started = time.perf_counter()
    while acked < args.count:
        while sent < args.count and sent - acked < args.window:
            client.publish(args.topic, payload, qos=1)
            sent += 1
        if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
            raise SystemExit("raw paho: the connection dropped")
    seconds = time.perf_counter() - started
    client.disconnect()
    print(json.dumps({"count": args.count, "seconds": seconds, "rate": args.count / seconds}))


if __name__ == "__main__":
    main()

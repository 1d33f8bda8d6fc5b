"""The hub-side consumer: a separate process that subscribes and counts what the hub delivers.

    python -m bench.consumer --port P --topic 'plantsync/v1/#' [--match BYTES --until N]
                             [--qos 0] [--duration S] [--linger S]

Prints ``ready`` once its subscription is acknowledged, then, when it stops, one JSON line (a
``ConsumerResult`` in ``bench.common``). It stops after ``--until`` messages whose payload
contains ``--match`` (the backlog, or a ceiling's messages), after ``--duration`` seconds, or
when its stdin closes (the parent's "stop now").

Messages with the marker are only counted (first and last arrival). Every other message is
"live": its JSON ``event_time`` (the envelope's) gives a latency = arrival - event_time,
summarised (count, p50, p99, max; seconds) per envelope ``type`` for the whole run and,
separately, for the messages whose event_time lies in the window in which the matched messages
arrived (``--linger`` keeps listening after the last matched one, for live messages that were
queued behind them). With ``BENCH_LIVE_DUMP=path`` in its environment it also writes every
live message's (arrival, latency) per type and the matched window to that JSON file: where in
time the slow ones lie (docs/performance.md, "stalls").
Plain paho in its own process, so it never shares an event loop or a GIL with what it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class _Counts:
    def __init__(self, marker: bytes | None, until: int | None) -> None:
        self.marker, self.until = marker, until
        self.count = self.matched = 0
        self.first = self.last = self.matched_first = self.matched_last = 0.0
        self.live: dict[str, list[tuple[float, float]]] = {}  # type: (arrival, latency s)
        self.done = threading.Event()

    def add(self, payload: bytes) -> None:
        now = time.time()
        self.count += 1
        self.first = self.first or now
        self.last = now
        if self.marker is not None and self.marker in payload:
            self.matched += 1
            self.matched_first = self.matched_first or now
            self.matched_last = now
            if self.until is not None and self.matched >= self.until:
                self.done.set()
            return
        kind, latency = _latency(payload, now)
        if latency is not None:
            self.live.setdefault(kind, []).append((now, latency))

    def result(self) -> dict[str, Any]:
        window = self.matched_first, self.matched_last
        return {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "matched": self.matched,
            "matched_first": self.matched_first,
            "matched_last": self.matched_last,
            "live": {kind: _summary(rows, None) for kind, rows in self.live.items()},
            "live_during_matched": {
                kind: _summary(rows, window) for kind, rows in self.live.items()
            },
        }


def _latency(payload: bytes, now: float) -> tuple[str, float | None]:
    """The envelope's type and arrival - event_time; (…, None) for anything else."""
    try:
        document = json.loads(payload)
        event_time = datetime.fromisoformat(document["event_time"]).timestamp()
        return str(document.get("type", "?")), now - event_time
    except (ValueError, KeyError, TypeError):
        return "?", None


def _summary(
    rows: list[tuple[float, float]], window: tuple[float, float] | None
) -> dict[str, float]:
    ordered = sorted(
        latency
        for arrival, latency in rows
        if window is None or window[0] <= arrival - latency <= window[1]
    )
    if not ordered:
        return {"count": 0}

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"count": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


def _stop_on_eof(done: threading.Event) -> None:
    sys.stdin.read()
    done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--qos", type=int, default=0, choices=(0, 1))
    parser.add_argument("--match", default=None, help="payload marker of counted-only messages")
    parser.add_argument("--until", type=int, default=None)
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--linger", type=float, default=0.0, help="seconds after --until")
    args = parser.parse_args()
    counts = _Counts(args.match.encode() if args.match else None, args.until)
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-consumer-{args.port}")
    client.on_message = lambda _c, _u, message: counts.add(bytes(message.payload))
    client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(args.topic, qos=args.qos)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", args.port)
    threading.Thread(target=_stop_on_eof, args=(counts.done,), daemon=True).start()
    deadline = time.monotonic() + args.duration
    announced = False
    while not counts.done.is_set() and time.monotonic() < deadline:
        if client.loop(timeout=0.05) != mqtt.MQTT_ERR_SUCCESS:
            break
        if subscribed.is_set() and not announced:
            print("ready", flush=True)
            announced = True
    lingering = time.monotonic() + args.linger
    while time.monotonic() < lingering and client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
        pass
    client.disconnect()
    dump = os.environ.get("BENCH_LIVE_DUMP")
    if dump:
        window = [counts.matched_first, counts.matched_last]
        Path(dump).write_text(json.dumps({"matched": window, "live": counts.live}))
    print(json.dumps(counts.result()), flush=True)


if __name__ == "__main__":
    main()

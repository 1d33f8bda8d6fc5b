"""HQ's side of the fleet scenario: one MQTT client that hears every site and answers resyncs.

    every site's up/# and status ─▶ Hq (paho, its own thread) ─▶ StreamConsumer (de-duplicate)
                                      │  per (site, stream): the seqs received
                                      │  per site: reconnects (a live "online" status), acks,
                                      │            resync requests (each answered at once)
    Hq.release(site, order) ─▶ <prefix>/<site>/down/schedule, QoS 1, seq 1, 2, 3 … per site
    resync.request ─▶ Hq answers with a schedule.snapshot of every order it released the site

A persistent session (clean session off), so a broker that keeps sessions queues what arrives
while HQ is away. The client reconnects every 20 ms while the broker is down, so what it records
as a reconnect time is at most that late. A QoS 1 message published while the broker is down is
kept by paho and sent once it is back (``publish`` answers "not connected", and sends it later):
HQ's planning system publishing during the outage.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from plantsync.contracts import StreamConsumer, Verdict
from plantsync.tools.hubtools import prepare_down_message

PREFIX = "plantsync/v1"
_RECONNECT_PAUSE = 0.02


@dataclass
class SiteLog:
    """What HQ saw of one site."""

    seqs: dict[str, set[int]] = field(default_factory=lambda: collections.defaultdict(set))
    """Per stream, every seq received (duplicates and all)."""
    online: list[float] = field(default_factory=list)
    """Arrival times of live (not retained) "online, connected" status messages: reconnects."""
    acks: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    """Per down message id, the outcomes acknowledged (duplicates of an ack dropped)."""
    resyncs: list[tuple[float, str]] = field(default_factory=list)
    """(arrival, reason) of every resync request (duplicates dropped)."""
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every order HQ released to the site: what a snapshot sends."""
    snapshots: dict[str, float] = field(default_factory=dict)
    """Id → when HQ sent it, of every snapshot answering the site's resync requests."""
    down_seq: int = 0


class Hq:
    """HQ on the hub: ``start()``, then read ``sites`` under ``lock``; ``stop()`` at the end."""

    def __init__(self, port: int, client_id: str = "fleet-hq") -> None:
        self.port = port
        self.lock = threading.Lock()
        self.sites: dict[str, SiteLog] = collections.defaultdict(SiteLog)
        self.consumer = StreamConsumer()
        self.per_second: collections.Counter[int] = collections.Counter()
        """Messages received per Unix second (duplicates included): the hub's delivery rate."""
        self.subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = lambda *_: self.subscribed.set()
        self._client.on_message = self._on_message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet-hq", daemon=True)

    def start(self, within: float = 10.0) -> None:
        self._client.connect("127.0.0.1", self.port)
        self._thread.start()
        if not self.subscribed.wait(within):
            raise RuntimeError("HQ did not subscribe")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.disconnect()

    # ---- down: releases and snapshots ---------------------------------------------------------

    def release(self, site: str, order_id: str) -> str:
        """Publish a schedule.release of one new order to ``site``; its message id."""
        order = _order(order_id)
        with self.lock:
            self.sites[site].orders[order_id] = order
            return self._publish_down(site, "schedule.release", {"orders": [order]})

    def _publish_down(self, site: str, message_type: str, payload: dict[str, Any]) -> str:
        """Under ``lock``: number the message with the site's next down seq and publish it."""
        log = self.sites[site]
        log.down_seq += 1
        message = prepare_down_message(
            {"type": message_type, "payload": payload},
            site=site,
            default_seq=lambda: log.down_seq,
            source="hq:fleet-bench",
        )
        self._client.publish(f"{PREFIX}/{site}/down/schedule", message.payload, qos=1)
        return message.message_id

    def _answer_resync(self, site: str) -> None:
        """Under ``lock``: the snapshot of every order released to ``site``."""
        log = self.sites[site]
        payload = {"orders": list(log.orders.values()), "as_of_seq": log.down_seq}
        log.snapshots[self._publish_down(site, "schedule.snapshot", payload)] = time.time()

    # ---- up: everything every site sends ------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._client.loop(timeout=0.05) == mqtt.MQTT_ERR_SUCCESS:
                continue
            try:
                self._client.reconnect()
            except OSError:
                time.sleep(_RECONNECT_PAUSE)

    def _on_connect(self, client: mqtt.Client, *_: object) -> None:
        self.subscribed.clear()
        client.subscribe([(f"{PREFIX}/+/up/#", 1), (f"{PREFIX}/+/status", 1)])

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: Any) -> None:
        now = time.time()
        document = json.loads(message.payload)
        site = message.topic.split("/")[2]
        with self.lock:
            self.per_second[int(now)] += 1
            if message.topic.endswith("/status"):
                if not message.retain and document.get("reason") == "connected":
                    self.sites[site].online.append(now)
                return
            log = self.sites[site]
            log.seqs[document["stream"]].add(document["seq"])
            if self.consumer.accept(document) is Verdict.DUPLICATE:
                return
            if document["type"] == "schedule.ack":
                log.acks[document["payload"]["original_id"]].append(document["payload"]["outcome"])
            elif document["type"] == "resync.request":
                log.resyncs.append((now, document["payload"]["reason"]))
                self._answer_resync(site)

    # ---- questions ----------------------------------------------------------------------------

    def applied(self, site: str, message_id: str) -> int:
        """How many times ``site`` acknowledged ``message_id`` as applied."""
        with self.lock:
            return self.sites[site].acks.get(message_id, []).count("applied")

    def snapshot_applied_since(self, site: str, moment: float) -> bool:
        """A snapshot HQ sent ``site`` after ``moment`` was acknowledged as applied."""
        with self.lock:
            log = self.sites[site]
            return any(
                "applied" in log.acks.get(message_id, [])
                for message_id, sent in log.snapshots.items()
                if sent >= moment
            )

    def released(self, site: str) -> set[str]:
        """The orders HQ released to ``site``."""
        with self.lock:
            return set(self.sites[site].orders)

    def missing(self, site: str, last_seqs: dict[str, int]) -> int:
        """Seqs 1 … last of each stream of ``site`` that never arrived."""
        with self.lock:
            received = self.sites[site].seqs
            return sum(
                len(set(range(1, last + 1)) - received.get(stream, set()))
                for stream, last in last_seqs.items()
            )

    def duplicates(self) -> int:
        """Messages received again (same id) and dropped by the de-duplication."""
        with self.lock:
            return self.consumer.counts[Verdict.DUPLICATE]

    def reconnected_after(self, site: str, moment: float) -> float | None:
        """The first live "online" status of ``site`` after ``moment``, seconds after it."""
        with self.lock:
            later = [arrival for arrival in self.sites[site].online if arrival >= moment]
        return min(later) - moment if later else None

    def resyncs_after(self, moment: float) -> dict[str, int]:
        """Resync requests per site that arrived after ``moment``."""
        with self.lock:
            return {
                site: sum(1 for arrival, _ in log.resyncs if arrival >= moment)
                for site, log in self.sites.items()
            }

    def peak_rate(self, start: float, end: float) -> int:
        """The busiest second's message count between ``start`` and ``end``."""
        with self.lock:
            return max(
                (count for second, count in self.per_second.items() if start <= second < end),
                default=0,
            )

    def received(self, start: float, end: float) -> int:
        with self.lock:
            return sum(count for second, count in self.per_second.items() if start <= second < end)


def _order(order_id: str) -> dict[str, Any]:
    """A new order, far enough ahead that no frozen horizon holds it for approval."""
    start = datetime.now(UTC) + timedelta(days=30)
    return {
        "order_id": order_id,
        "revision": 1,
        "product_id": "PRD-100",
        "quantity": {"value": "10", "unit": "pcs"},
        "work_center": "wc-1",
        "equipment_id": "wc-1",
        "planned_start": start.isoformat(),
        "planned_end": (start + timedelta(hours=1)).isoformat(),
        "priority": 10,
        "request_state": "Released",
    }


def histogram(seconds: list[float], *, bin_width: float = 1.0, width: int = 40) -> str:
    """A text histogram of ``seconds``, one line per ``bin_width`` bin."""
    if not seconds:
        return "(none)"
    bins = collections.Counter(int(value // bin_width) for value in seconds)
    most = max(bins.values())
    lines = []
    for index in range(max(bins) + 1):
        count = bins.get(index, 0)
        bar = "#" * max(1 if count else 0, round(count * width / most))
        low = index * bin_width
        lines.append(f"  {low:5.1f}-{low + bin_width:5.1f} s  {count:3d}  {bar}")
    return "\n".join(lines)

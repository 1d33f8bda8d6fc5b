"""Prometheus metrics: the service levels HQ cares about, read from the live counters at scrape.

    GET /metrics ─▶ refresh(): outbox and inbox stats from the store (two reads)
                 ─▶ generate_latest(registry): AgentCollector reads the view's link health,
                    the pipeline's, the uplink's and the downlink's counters (HQ's alarm
                    acks among them), and the stats
                    just read; the schedule latency histogram and the confirmation counters
                    are observed where they happen (the downlink's ``on_applied``, the
                    confirmation API, the plant event reporter)

One ``CollectorRegistry`` per agent, never the process-wide default: tests run many agents.
The collector reads the agent through its ``AgentView`` (``view.py``), as the rest of the web.

The service levels, in PromQL (``[1h]`` is any window):

    schedule update latency  histogram_quantile(0.95,
                               rate(plantsync_schedule_update_latency_seconds_bucket[1h]))
                             (HQ's ``event_time`` of the down message → applied at the plant,
                             approval waits and plant-system retries included)
    sync success rate        increase(
                               plantsync_schedule_messages_settled_total{outcome="applied"}[1h])
                             / increase(plantsync_schedule_messages_settled_total[1h])
                             (``waiting_for_approval`` is not final: exclude it with
                             ``{outcome=~"applied|rejected"}`` in the denominator)
    confirmation             increase(plantsync_confirmations_total{final="true"}[1d])
    completeness             / increase(plantsync_schedule_orders_applied_total[1d])
                             orders the plant reported finished per order applied. An order is
                             confirmed hours after it is applied, and a revision applies an
                             order again, so read it over a window longer than an order runs;
                             it approaches 1 when every applied order is eventually confirmed.
    outbox                   plantsync_outbox_depth{lane}, plantsync_outbox_oldest_age_seconds
    store alarms             plantsync_store_quarantined_files > 0 (a corrupt store was moved
                             aside; cleared when plant IT deletes the file),
                             plantsync_store_disk_full == 1,
                             increase(plantsync_store_writes_refused_total[5m])
    publish and ack rates    rate(plantsync_messages_published_total[5m]),
                             rate(plantsync_messages_acked_total[5m])
    plant input              plantsync_unplanned_reports_total{type} (orders HQ never sent),
                             plantsync_idempotent_replays_total (retries answered, not sent
                             again), plantsync_idempotency_conflicts_total (a key reused)
    backfill after an outage plantsync_backfill_draining, plantsync_backfill_remaining_messages,
                             plantsync_backfill_rate_messages_per_second,
                             plantsync_backfill_eta_seconds (only while it is known)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from plantsync import __version__
from plantsync.agent.business import BusinessCounters
from plantsync.agent.downlink import DownlinkCounters
from plantsync.agent.sourcing.acks import AlarmAckCounters
from plantsync.agent.supervisor import LinkState
from plantsync.buffer.base import OutboxStats
from plantsync.buffer.database import StoreHealth
from plantsync.buffer.inbox import InboxStats
from plantsync.buffer.quarantine import quarantined_files
from plantsync.errors import StoreError
from plantsync.web.certificates import certificate_metric, peer_certificate_metric
from plantsync.web.progress import backfill_metrics
from plantsync.web.view import AgentView

if TYPE_CHECKING:  # FastAPI is the web app's, built after READY; ``/metrics``: routes/metrics.py
    from fastapi import Request

LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400)
"""Seconds: a schedule normally applies within seconds; approvals and outages take hours."""


class AgentMetrics:
    """The agent's registry and what is observed as it happens: the agent's ``Observer``
    (``plantsync.agent.service``), built by the composition root before the agent, and told
    which agent to read at scrape time by ``create_app`` (``watch``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "plantsync_schedule_update_latency_seconds",
            "HQ event_time of a down message to applied at the plant",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.orders_applied = Counter(
            "plantsync_schedule_orders_applied",
            "orders applied at the plant (one per order per applied message)",
            registry=self.registry,
        )
        self.confirmations = Counter(
            "plantsync_confirmations",
            "production confirmations committed for HQ, by final",
            ["final"],
            registry=self.registry,
        )
        for final in ("true", "false"):
            self.confirmations.labels(final=final)
        self._collector: AgentCollector | None = None

    def watch(self, agent: AgentView) -> None:
        """Read ``agent``'s live counters at every scrape (replaces the agent watched before)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
        self._collector = AgentCollector(agent)
        self.registry.register(self._collector)

    def schedule_applied(
        self, latency_seconds: float, correlation_id: str, order_ids: Sequence[str]
    ) -> None:
        """The downlink's ``on_applied`` (its ``OnApplied`` shape): one message settled
        APPLIED, ``latency_seconds`` after HQ's event time, applying ``order_ids``."""
        self.latency.observe(max(0.0, latency_seconds))
        self.orders_applied.inc(len(order_ids))

    def confirmed(self, *, final: bool) -> None:
        self.confirmations.labels(final="true" if final else "false").inc()

    async def exposition(self) -> bytes:
        """Read the store's stats, then render every metric in the text format."""
        if self._collector is not None:
            await self._collector.refresh()
        return generate_latest(self.registry)


class AgentCollector(Collector):
    """Reads the agent's live counters at scrape time instead of mirroring each increment."""

    def __init__(self, agent: AgentView) -> None:
        self._agent = agent
        self._outbox: OutboxStats | None = None
        self._inbox: InboxStats | None = None

    async def refresh(self) -> None:
        store = self._agent.store
        self._outbox = self._inbox = None
        if store is None:
            return
        try:
            self._outbox = await store.outbox.stats()
            self._inbox = await store.inbox.inbox_stats()
        except StoreError:
            return  # the store metrics are absent; plantsync_store_up says why

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        yield from self._agent_info()
        yield from self._links()
        yield from self._flows()
        yield certificate_metric(self._agent.config)
        yield peer_certificate_metric(self._agent.health)
        yield _gauge("plantsync_store_up", "1 when the store answered", self._outbox is not None)
        if self._agent.store is not None:
            yield from _store_health(self._agent.store.health)
        if self._outbox is not None:
            yield from _outbox(self._outbox, now)
        if self._inbox is not None:
            yield from _inbox(self._inbox)

    def _agent_info(self) -> Iterator[Metric]:
        agent = self._agent
        info = GaugeMetricFamily(
            "plantsync_agent_info", "version, site, config hash", labels=["version", "site", "hash"]
        )
        info.add_metric([__version__, agent.config.site.id, agent.config_hash], 1)
        yield info
        yield _gauge(
            "plantsync_agent_start_time_seconds", "Unix time", agent.started_at.timestamp()
        )

    def _links(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("plantsync_link_up", "1 while the link is up", labels=["link"])
        state = GaugeMetricFamily(
            "plantsync_link_state", "1 for the link's current state", labels=["link", "state"]
        )
        idle = GaugeMetricFamily(
            "plantsync_link_last_activity_age_seconds",
            "seconds since the last successful exchange",
            labels=["link"],
        )
        counted = GaugeMetricFamily(
            "plantsync_link_session_count",
            "what the link's driver counted this session: dropped, overflows (values lost),"
            " more_notifications, publish_requests",
            labels=["link", "counter"],
        )
        connects = CounterMetricFamily("plantsync_link_connects", "connects", labels=["link"])
        failures = CounterMetricFamily("plantsync_link_failures", "failures", labels=["link"])
        for name, health in self._agent.health.items():
            up.add_metric([name], health.state is LinkState.UP)
            for candidate in LinkState:
                state.add_metric([name, candidate.value], health.state is candidate)
            seconds = health.seconds_since_activity()  # monotonic: immune to clock steps
            if seconds is not None:
                idle.add_metric([name], seconds)
            connects.add_metric([name], health.connects)
            failures.add_metric([name], health.failures)
            for counter, value in health.counters.items():
                counted.add_metric([name, counter], value)
        yield from (up, state, idle, counted, connects, failures)
        yield self._protocols()

    def _protocols(self) -> Metric:
        protocols = GaugeMetricFamily(
            "plantsync_link_protocol_info",
            "1 for the protocol version the link negotiated last (the hub: MQTT 5 or 3.1.1)",
            labels=["link", "version"],
        )
        for name, health in self._agent.health.items():
            if health.protocol is not None:
                protocols.add_metric([name, health.protocol], 1)
        return protocols

    def _flows(self) -> Iterator[Metric]:
        agent = self._agent
        if agent.pipeline is not None:
            counters = agent.pipeline.counters
            yield _counter("plantsync_readings", "readings from sources", counters.readings)
            yield _counter(
                "plantsync_telemetry_messages", "machine.state committed", counters.messages
            )
            yield _counter(
                "plantsync_telemetry_dropped",
                "telemetry shed: at the size cap, or refused on a full disk",
                counters.dropped,
            )
        if agent.uplink is not None:
            uplink = agent.uplink.counters
            yield _counter("plantsync_messages_published", "QoS 1 publishes", uplink.published)
            yield _counter("plantsync_messages_acked", "PUBACKs persisted", uplink.acked)
            yield _counter("plantsync_messages_requeued", "returned to ready", uplink.requeued)
            yield from backfill_metrics(agent.uplink.backfill)
        if agent.downlink is not None:
            yield from _downlink(agent.downlink.counters)
            yield from _alarm_acks(agent.downlink.alarm_acks.counters)
        if agent.business is not None:
            yield from _business(agent.business.counters)


def _downlink(counters: DownlinkCounters) -> Iterable[Metric]:
    values = asdict(counters)
    yield _counter("plantsync_schedule_messages_received", "down messages", values["received"])
    yield _counter("plantsync_schedule_duplicates", "redeliveries", values["duplicates"])
    yield _counter("plantsync_dead_letters", "down messages refused", values["dead_letters"])
    yield _counter("plantsync_schedule_retries", "plant system unreachable", values["retries"])
    yield _counter(
        "plantsync_schedule_conflicts",
        "down messages rejected: an applied order revision with other content",
        values["conflicts"],
    )
    yield _counter(
        "plantsync_schedule_seq_gaps",
        "down seqs that never arrived: each asked HQ for a snapshot",
        values["seq_gaps"],
    )
    yield _counter(
        "plantsync_schedule_seq_resets", "down sequence resets by HQ", values["seq_resets"]
    )
    settled = CounterMetricFamily(
        "plantsync_schedule_messages_settled",
        "down messages settled, by outcome (rejected includes failed)",
        labels=["outcome"],
    )
    for outcome, key in (
        ("applied", "applied"),
        ("rejected", "rejected"),
        ("waiting_for_approval", "waiting"),
    ):
        settled.add_metric([outcome], values[key])
    yield settled


def _alarm_acks(counters: AlarmAckCounters) -> Iterable[Metric]:
    settled = CounterMetricFamily(
        "plantsync_alarm_acks_settled",
        "HQ's alarm.ack settled, by outcome (rejected: by the server, unknown source, expired,"
        " or by a planner)",
        labels=["outcome"],
    )
    settled.add_metric(["applied"], counters.applied)
    settled.add_metric(["rejected"], counters.rejected)
    settled.add_metric(["waiting_for_approval"], counters.waiting)
    yield settled


def _business(counters: BusinessCounters) -> Iterable[Metric]:
    unplanned = CounterMetricFamily(
        "plantsync_unplanned_reports",
        "order status and confirmations sent for orders not in the last-known-good schedule",
        labels=["type"],
    )
    unplanned.add_metric(["production.confirmation"], counters.unplanned_confirmations)
    unplanned.add_metric(["order.status"], counters.unplanned_statuses)
    yield unplanned
    yield _counter(
        "plantsync_idempotent_replays",
        "retries under a kept key answered with the first answer, not sent again",
        counters.replayed,
    )
    yield _counter(
        "plantsync_idempotency_conflicts",
        "requests refused (409): their key was used before for other content",
        counters.conflicts,
    )


def _store_health(health: StoreHealth) -> Iterator[Metric]:
    yield _counter(
        "plantsync_store_quarantined",
        "corrupt store files moved aside at this start (0 or 1)",
        health.quarantine is not None,
    )
    yield _gauge(
        "plantsync_store_quarantined_files",
        "quarantined (corrupt) store files still beside the store: an alarm until deleted",
        len(quarantined_files(health.path)),
    )
    yield _gauge(
        "plantsync_store_disk_full", "1 while store writes fail: disk full", health.disk_full
    )
    yield _counter(
        "plantsync_store_writes_refused",
        "store write transactions refused for a full disk since start",
        health.writes_refused,
    )


def _outbox(stats: OutboxStats, now: float) -> Iterator[Metric]:
    depth = GaugeMetricFamily("plantsync_outbox_depth", "messages waiting", labels=["lane"])
    oldest = GaugeMetricFamily(
        "plantsync_outbox_oldest_age_seconds", "age of the oldest message", labels=["lane"]
    )
    for lane, lane_stats in stats.lanes.items():
        depth.add_metric([lane.name.lower()], lane_stats.depth)
        age = 0.0 if lane_stats.oldest_created_at is None else now - lane_stats.oldest_created_at
        oldest.add_metric([lane.name.lower()], max(0.0, age))
    yield depth
    yield oldest
    yield _gauge("plantsync_outbox_size_bytes", "bytes counted against the cap", stats.size_bytes)
    yield _gauge("plantsync_outbox_max_size_bytes", "the cap", stats.max_size_bytes)
    yield _counter(
        "plantsync_outbox_evicted", "telemetry evicted, since created", stats.evicted_total
    )
    yield _gauge(
        "plantsync_outbox_dead_letter_bytes", "of the size, dead letters", stats.dead_letter_bytes
    )
    yield _gauge(
        "plantsync_outbox_idempotency_key_bytes", "of the size, idempotency keys", stats.key_bytes
    )
    yield _counter(
        "plantsync_dead_letters_evicted",
        "dead letters evicted for room (beyond their share, or for a business message)",
        stats.dead_letters_evicted,
    )


def _inbox(stats: InboxStats) -> Iterator[Metric]:
    yield _gauge("plantsync_inbox_pending", "down messages not yet settled", stats.pending)
    yield _gauge(
        "plantsync_inbox_oldest_pending_age_seconds",
        "age of the oldest pending down message",
        stats.oldest_pending_age or 0.0,
    )
    yield _gauge("plantsync_dead_letters_stored", "dead letters kept", stats.dead_letters)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=float(value))


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=float(value))


def metrics_of(request: Request) -> AgentMetrics:
    """The registry ``create_app`` serves (kept on ``app.state.metrics``)."""
    metrics: AgentMetrics = request.app.state.metrics
    return metrics

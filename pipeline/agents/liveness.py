"""Worker liveness: per-app Prometheus telemetry, consumer lag, and crash-the-process agents.

faust's supervisor restarts a crashed agent silently, and a consumer can stop fetching without a
word (both reported on faust-streaming's tracker). So every agent here runs under `guarded`: an
exception escaping the agent body is logged and the process exits with status 1, for the
orchestrator to restart it (at-least-once: uncommitted input is replayed, and the agents'
effects are idempotent). Lag per agent and topic-partition is exported as a gauge so a silently
stalled consumer shows, and per consumer group and topic in records and in seconds (the age of
the oldest unprocessed record, estimated by `pipeline.core.lag_time`). A metadata request every
2 s (`watch_broker`, the ingress's probe) drives `ardary_worker_broker_up`. Every metric of a
worker, the process's own included, is on its app's one registry (`Telemetry`); the
operator's reference of them all is docs/operations.md, "Metrics".
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from pipeline.core.lag_time import LagClock, PartitionView
from pipeline.kafka.lag import committed_offsets
from pipeline.kafka.produce import ACK_BUCKETS, app_producer, observe_acks
from pipeline.kafka.publisher import PROBE_TIMEOUT_S, metadata_ok, watch_broker

__all__ = [
    "API_BUCKETS",
    "CRASH_EXIT_CODE",
    "LabelledSnapshot",
    "Telemetry",
    "crash_process",
    "guarded",
    "register_broker_probe",
    "register_lag_monitor",
    "telemetry_for",
]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 1
LAG_INTERVAL_S = 5.0
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Bucket bounds (s) of `ardary_api_request_seconds` (the HTTP timeout is 10 s by default)."""


class LabelledSnapshot:
    """A gauge with one label, read from a function at scrape time (nothing on the hot path).

    A label value that the source stops giving reads 0 from then on (a login whose backlog
    emptied, whose breaker closed) rather than vanishing with its last value.
    """

    def __init__(
        self, name: str, documentation: str, label: str, registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.source: Callable[[], Mapping[str, float]] = dict
        self._seen: set[str] = set()
        registry.register(self)  # type: ignore[arg-type]

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=(self.label,))

    def collect(self) -> Iterator[Metric]:
        values = dict(self.source())
        for gone in self._seen - values.keys():
            values[gone] = 0.0
        self._seen.update(values)
        family = GaugeMetricFamily(self.name, self.documentation, labels=(self.label,))
        for key in sorted(values):
            family.add_metric((key,), values[key])
        yield family


class Telemetry:
    """The Prometheus metrics of one worker app (own registry: several apps may share a process).

    The worker exports this registry alone: it also carries prometheus_client's process,
    platform and garbage-collector collectors, which would otherwise sit on the library's
    global registry. `status` maps an agent name to a function returning a snapshot of that
    agent's state (e.g. the outbound agent's buffered and in-flight messages) for a page
    or a test to read through the app, never through a module global.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.events_processed = Counter(
            "ardary_agent_events_processed", "Events an agent processed.", ["agent"], registry=r
        )
        self.events_skipped = Counter(
            "ardary_agent_events_skipped",
            "Events an agent skipped, by reason.",
            ["agent", "reason"],
            registry=r,
        )
        self.records_emitted = Counter(
            "ardary_agent_records_emitted", "Records an agent produced.", ["agent"], registry=r
        )
        self.agent_up = Gauge(
            "ardary_agent_up", "1 while the agent's loop is running.", ["agent"], registry=r
        )
        self.last_batch = Gauge(
            "ardary_agent_last_batch_timestamp_seconds",
            "Wall-clock time of the agent's last processed batch.",
            ["agent"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ardary_consumer_lag",
            "Highwater minus committed offset, per agent and topic-partition.",
            ["agent", "topic", "partition"],
            registry=r,
        )
        self.consumer_lag_records = Gauge(
            "ardary_consumer_lag_records",
            "Records not yet committed, summed over this worker's partitions of the topic.",
            ["group", "topic"],
            registry=r,
        )
        self.consumer_lag_seconds = Gauge(
            "ardary_consumer_lag_seconds",
            "Now minus the timestamp of the oldest unprocessed record of the topic (0 when "
            "caught up); exact for a record an agent holds, else estimated from the last "
            "record taken or the last time caught up (pipeline/core/lag_time.py).",
            ["group", "topic"],
            registry=r,
        )
        self.lag_clock = LagClock()
        self.worker_broker_up = Gauge(
            "ardary_worker_broker_up",
            "1 while the broker answers a metadata request (probed every 2 s; 0 after two "
            "misses in a row, and until the first probe).",
            registry=r,
        )
        self.produce_ack = Histogram(
            "ardary_kafka_produce_ack_seconds",
            "Time from handing a record batch to the Kafka producer until the broker "
            "acknowledged it.",
            ["process"],
            buckets=ACK_BUCKETS,
            registry=r,
        ).labels("worker")
        self.api_request_seconds = Histogram(
            "ardary_api_request_seconds",
            "Duration of each Ardary API call, by endpoint and outcome.",
            ["endpoint", "outcome"],
            buckets=API_BUCKETS,
            registry=r,
        )
        self.lifecycle_table_size = Gauge(
            "ardary_lifecycle_table_size",
            "Live lifecycles in this worker's correlate table (as of the last TTL scan).",
            registry=r,
        )
        self.lifecycles_expired = Counter(
            "ardary_lifecycles_expired", "Lifecycles deleted by the TTL.", registry=r
        )
        self.lifecycles_overdue = Counter(
            "ardary_lifecycles_overdue_total",
            "Lifecycle records flagged overdue (overdue_since set: no delivery receipt by the "
            "deadline), once per message; a restart or rebalance may count one again.",
            registry=r,
        )
        self.metrics_too_late = Counter(
            "ardary_metrics_facts_too_late",
            "Metric facts dropped because their window had closed (end + grace).",
            registry=r,
        )
        self.metrics_windows_expired = Counter(
            "ardary_metrics_windows_expired", "Closed metric windows forgotten.", registry=r
        )
        self.sms_window = Gauge(
            "ardary_sms_window",
            "Latest SMS metrics window of this worker, per window size, login and field.",
            ["window", "login", "field"],
            registry=r,
        )
        self.send_result_codes = Counter(
            "ardary_send_result_codes",
            "Error codes of SendResults that were not SUBMITTED (at-least-once: a redelivered "
            "result counts again).",
            ["code"],
            registry=r,
        )
        self._outbound(r)
        self.watched: dict[str, frozenset[str]] = {}
        self.status: dict[str, Callable[[], Mapping[str, Any]]] = {}

    def _outbound(self, r: CollectorRegistry) -> None:
        self.outbound_results = Counter(
            "ardary_outbound_results_total",
            "SendResults produced, by outcome",
            ["outcome"],
            registry=r,
        )
        self.outbound_batches = Counter(
            "ardary_outbound_batches_total", "Ardary send requests made", registry=r
        )
        self.outbound_rate_share = Gauge(
            "ardary_outbound_rate_share", "This worker's share of the rate, msg/s", registry=r
        )
        self.outbound_in_flight = Gauge(
            "ardary_outbound_in_flight", "Messages handed to Ardary, outcome pending", registry=r
        )
        self.outbound_buffered = Gauge(
            "ardary_outbound_buffered", "Requests buffered, waiting for their batch", registry=r
        )
        self.outbound_states_expired = Counter(
            "ardary_outbound_states_expired_total",
            "Published send states deleted after the state TTL",
            registry=r,
        )
        self.outbound_breaker_open = LabelledSnapshot(
            "ardary_outbound_breaker_open",
            "1 while the login's circuit breaker is open (Ardary refused the account: its "
            "messages fail without a call until a probe after the cool-down succeeds)",
            "login",
            r,
        )
        self.outbound_backlog = LabelledSnapshot(
            "ardary_outbound_backlog",
            "Send requests of the login buffered in this worker: waiting for their batch, "
            "for rate tokens or for a free call slot",
            "login",
            r,
        )

    def batch_done(self, agent: str, processed: int, emitted: int) -> None:
        """Count one processed batch of `agent` (events in, records out, when)."""
        self.events_processed.labels(agent).inc(processed)
        self.records_emitted.labels(agent).inc(emitted)
        self.last_batch.labels(agent).set(time.time())

    def watch(self, agent: str, topics: Iterable[str]) -> None:
        """Export the consumer lag of `topics` (full names) under `agent`."""
        self.watched[agent] = frozenset(topics)

    def observe_api(self, endpoint: str, outcome: str, seconds: float) -> None:
        """One Ardary API call (`pipeline.clients.ardary_api.ApiObserver`)."""
        self.api_request_seconds.labels(endpoint, outcome).observe(seconds)

    def broker_probed(self, up: bool) -> None:
        """The verdict of the worker's broker probe (`watch_broker`)."""
        self.worker_broker_up.set(1.0 if up else 0.0)


_TELEMETRY: weakref.WeakKeyDictionary[Any, Telemetry] = weakref.WeakKeyDictionary()


def telemetry_for(app: Any) -> Telemetry:
    """The telemetry of `app`, created on first use (one registry per app)."""
    tel = _TELEMETRY.get(app)
    if tel is None:
        tel = _TELEMETRY[app] = Telemetry()
    return tel


def crash_process(agent: str, exc: BaseException) -> None:
    """Log the failure (type and message only: records may hold personal data) and exit 1.

    `os._exit`, not `sys.exit`: faust would catch SystemExit in the agent's task and restart it.
    Output already produced stays; uncommitted input is replayed after the restart.
    """
    log.critical("agent %s crashed: %s: %s; exiting", agent, type(exc).__name__, exc)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


def guarded(
    agent: str,
    body: Callable[[Any], Awaitable[None]],
    telemetry: Telemetry,
    on_crash: Callable[[str, BaseException], None] = crash_process,
) -> Callable[[Any], Awaitable[None]]:
    """Wrap an agent body so that an exception takes the process down instead of being retried."""

    async def run(stream: Any) -> None:
        telemetry.agent_up.labels(agent).set(1)
        try:
            await body(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_crash(agent, exc)
            raise
        finally:
            telemetry.agent_up.labels(agent).set(0)

    run.__name__ = run.__qualname__ = f"{agent}_agent"
    return run


def _oldest_unacked(unacked: Iterable[Any], topics: frozenset[str]) -> dict[Any, float]:
    """Per topic-partition of `topics`, the timestamp of the lowest offset taken, not acked."""
    lowest: dict[Any, tuple[int, float]] = {}
    for message in list(unacked):  # a WeakSet: copied before anything can change it
        if message.acked or message.topic not in topics:
            continue
        seen = lowest.get(message.tp)
        if seen is None or message.offset < seen[0]:
            lowest[message.tp] = (message.offset, message.timestamp)
    return {tp: stamp for tp, (_offset, stamp) in lowest.items()}


async def _lag_once(app: Any, telemetry: Telemetry, now: float | None = None) -> None:
    consumer = app.consumer
    committed_by_tp = committed_offsets(consumer)
    topics = frozenset().union(*telemetry.watched.values())
    now = time.time() if now is None else now
    oldest = _oldest_unacked(consumer.unacked, topics)
    taken: Mapping[Any, int | None] = getattr(app.monitor, "tp_read_offsets", {})
    records = dict.fromkeys(topics, 0)
    seconds = dict.fromkeys(topics, 0.0)
    assigned = []
    for tp in consumer.assignment():
        agents = [a for a, watched in telemetry.watched.items() if tp.topic in watched]
        if not agents:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = committed_by_tp.get(tp)
        if committed is None:
            committed = await consumer.position(tp)
        if committed is None:
            continue
        lag = max(0, int(highwater) - int(committed))
        for agent in agents:
            telemetry.consumer_lag.labels(agent, tp.topic, str(tp.partition)).set(lag)
        view = PartitionView(int(committed), int(highwater), taken.get(tp), oldest.get(tp))
        assigned.append(tp)
        records[tp.topic] += lag
        seconds[tp.topic] = max(seconds[tp.topic], telemetry.lag_clock.seconds(tp, view, now))
    telemetry.lag_clock.retain(assigned)
    group = str(app.conf.id)
    for topic in topics:
        telemetry.consumer_lag_records.labels(group, topic).set(records[topic])
        telemetry.consumer_lag_seconds.labels(group, topic).set(seconds[topic])


def register_lag_monitor(app: Any, telemetry: Telemetry, interval: float = LAG_INTERVAL_S) -> None:
    """Refresh the consumer-lag gauges every `interval` seconds while the worker runs; also
    start the broker probe (`register_broker_probe`) and time the acks of the batches the agents
    send (`ardary_kafka_produce_ack_seconds`): every worker app gets these (`register_web`)."""
    observe_acks(app, telemetry.produce_ack.observe)
    register_broker_probe(app, telemetry)

    @app.timer(interval, name="pipeline.lag_monitor")  # type: ignore[untyped-decorator]
    async def lag_monitor() -> None:
        if app.consumer is None or app.rebalancing:
            return
        try:
            await _lag_once(app, telemetry)
        except Exception as exc:  # a metrics refresh must never take the worker down
            log.warning("lag refresh failed: %s: %s", type(exc).__name__, exc)


def register_broker_probe(
    app: Any, telemetry: Telemetry, check: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Set `ardary_worker_broker_up` from a metadata request every 2 s (1 s timeout) on the app's
    producer (`check`: tests) while the worker runs."""

    async def metadata() -> bool:
        try:
            producer = app_producer(app)
        except Exception:  # faust's producer not (or no longer) started: no answer either
            return False
        return await metadata_ok(producer, PROBE_TIMEOUT_S)

    probe = check or metadata

    @app.task  # type: ignore[misc,untyped-decorator]
    async def broker_probe() -> None:
        await watch_broker(probe, telemetry.broker_probed)

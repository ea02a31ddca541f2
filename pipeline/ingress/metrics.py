"""Prometheus metrics of the ingress: plain counters on the hot path, rendered at scrape time.

prometheus_client's own metric objects take a lock and resolve labels on every update (~2 µs
each, several per request); the ingress runs on one event loop, so it keeps plain ints and a
custom collector turns them into Prometheus families when `/metrics` is scraped.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from pipeline.kafka.produce import ACK_BUCKETS

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "IngressMetrics"]

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class SpoolView(Protocol):
    """What the metrics read of the spool."""

    records: int
    bytes: int
    oldest_at: float | None


class IngressMetrics:
    """Requests by kind and code, records by kind, publish latency, dead letters, in flight,
    the producer's ack latency, and whether the broker is up (`KafkaPublisher.broker_up`, which
    follows failed publishes and a metadata probe every 2 s).

    Not thread-safe by design: every update happens on the ingress's event loop thread.
    A registry per instance keeps several apps in one process (tests) independent.
    """

    def __init__(
        self,
        in_flight: Callable[[], int] = lambda: 0,
        broker_up: Callable[[], bool] = lambda: True,
        spool: Callable[[], SpoolView | None] = lambda: None,
    ) -> None:
        self._in_flight = in_flight
        self._broker_up = broker_up
        self._spool = spool
        self._forwarded = 0
        self._requests: dict[tuple[str, int], int] = {}
        self._records: dict[str, int] = {}
        self._dead_letters: dict[str, int] = {}
        self._buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._acks = [0] * (len(ACK_BUCKETS) + 1)
        self._ack_sum = 0.0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)  # type: ignore[arg-type]

    def request(self, kind: str, code: int) -> None:
        key = (kind, code)
        self._requests[key] = self._requests.get(key, 0) + 1

    def record(self, kind: str) -> None:
        self._records[kind] = self._records.get(kind, 0) + 1

    def dead_letter(self, reason: str) -> None:
        self._dead_letters[reason] = self._dead_letters.get(reason, 0) + 1

    def forwarded(self, records: int) -> None:
        self._forwarded += records

    def observe_publish(self, seconds: float) -> None:
        self._buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self._latency_sum += seconds

    def observe_ack(self, seconds: float) -> None:
        """One record batch acknowledged by the broker `seconds` after it was handed over."""
        self._acks[bisect_left(ACK_BUCKETS, seconds)] += 1
        self._ack_sum += seconds

    def collect(self) -> Iterator[Metric]:
        """The prometheus_client collector protocol (called at scrape time)."""
        requests = CounterMetricFamily(
            "ardary_ingress_requests",
            "HTTP requests by callback kind (or endpoint) and status code",
            labels=("kind", "code"),
        )
        for (kind, code), count in sorted(self._requests.items()):
            requests.add_metric((kind, str(code)), count)
        yield requests
        records = CounterMetricFamily(
            "ardary_ingress_records_published",
            "Callback records acknowledged by the broker, by kind",
            labels=("kind",),
        )
        for kind, count in sorted(self._records.items()):
            records.add_metric((kind,), count)
        yield records
        dead = CounterMetricFamily(
            "ardary_ingress_dead_letters",
            "Requests written to the dead-letter topic, by reason",
            labels=("reason",),
        )
        for reason, count in sorted(self._dead_letters.items()):
            dead.add_metric((reason,), count)
        yield dead
        yield HistogramMetricFamily(
            "ardary_ingress_publish_seconds",
            "Time from publish to broker acknowledgement of all records of a request",
            buckets=_cumulative(LATENCY_BUCKETS, self._buckets),
            sum_value=self._latency_sum,
        )
        acks = HistogramMetricFamily(
            "ardary_kafka_produce_ack_seconds",
            "Time from handing a record batch to the Kafka producer until the broker "
            "acknowledged it",
            labels=("process",),
        )
        acks.add_metric(("ingress",), _cumulative(ACK_BUCKETS, self._acks), self._ack_sum)
        yield acks
        yield GaugeMetricFamily(
            "ardary_ingress_in_flight", "Callback requests being processed", value=self._in_flight()
        )
        yield GaugeMetricFamily(
            "ardary_ingress_broker_up",
            "1 while the broker takes records; 0 after a failed publish or two failed metadata "
            "probes in a row (one every 2 s), and callbacks then go to the spool",
            value=1.0 if self._broker_up() else 0.0,
        )
        yield from self._spool_families()

    def _spool_families(self) -> Iterator[Metric]:
        spool = self._spool()
        if spool is None:
            return
        yield GaugeMetricFamily(
            "ardary_ingress_spool_records",
            "Requests kept in the spool, waiting for the broker",
            value=spool.records,
        )
        yield GaugeMetricFamily(
            "ardary_ingress_spool_bytes", "Bytes the spool holds on disk", value=spool.bytes
        )
        age = 0.0 if spool.oldest_at is None else max(0.0, time.time() - spool.oldest_at)
        yield GaugeMetricFamily(
            "ardary_ingress_spool_oldest_age_seconds",
            "Age of the oldest spooled request (0 when empty)",
            value=age,
        )
        yield CounterMetricFamily(
            "ardary_ingress_spool_forwarded_records",
            "Records forwarded from the spool to Kafka",
            value=self._forwarded,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets (upper bound, cumulative count) from per-bucket counts."""
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip((*bounds, float("inf")), counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    return buckets

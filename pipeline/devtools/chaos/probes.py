"""What the chaos run reads of the running stack: Prometheus gauges, readiness, consumer-group
lag, partition leaders and topic end offsets. Every probe answers None (or raises nothing) when
the thing it asks is down: the run is there to see things down.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.lag import admin_and_consumer, group_lag, group_lag_by_partition

__all__ = [
    "end_offsets",
    "gauge",
    "group_lag",
    "group_lag_by_partition",
    "partition_leaders",
    "status_of",
]


def gauge(url: str, name: str, timeout: float = 2.0) -> float | None:
    """The sum over every label set of metric `name` at `url` (None: unreachable or absent)."""
    try:
        text = httpx.get(url, timeout=timeout).text
    except httpx.HTTPError:
        return None
    total: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total = (total or 0.0) + sample.value
    return total


def status_of(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status `url` answers (None: no answer)."""
    try:
        return httpx.get(url, timeout=timeout).status_code
    except httpx.HTTPError:
        return None


def partition_leaders(client: KafkaClientConfig, topic: str) -> dict[int, int]:
    """partition → id of its leader node, for the partitions that have one."""
    with admin_and_consumer(client, "chaos-probe") as (admin, _):
        (described,) = admin.describe_topics([topic])
    leaders: dict[int, int] = {}
    for p in described["partitions"]:
        leader = p.get("leader_id", p.get("leader", -1))
        if leader is not None and leader >= 0:
            leaders[int(p.get("partition_index", p.get("partition")))] = int(leader)
    return leaders


def end_offsets(client: KafkaClientConfig, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) → end offset, for every partition of `topics` that exists."""
    from kafka import TopicPartition

    with admin_and_consumer(client, "chaos-probe") as (_, consumer):
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        return {(tp.topic, tp.partition): int(o) for tp, o in consumer.end_offsets(tps).items()}

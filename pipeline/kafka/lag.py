"""Consumer lag: what a faust worker has committed, for its lag gauges
(`pipeline.agents.liveness`), and what a consumer group has not committed yet, asked of the
brokers (the demo stack, the chaos run and the tests wait on it)."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.errors import kafka_errors

__all__ = ["admin_and_consumer", "committed_offsets", "group_lag", "group_lag_by_partition"]


def committed_offsets(consumer: Any) -> Mapping[Any, int]:
    """The offsets faust last committed, per topic-partition.

    faust-streaming 0.15.3 keeps them in `Consumer._committed_offset` and offers no public
    accessor; asking the broker instead would cost a round trip per refresh.
    """
    committed: Mapping[Any, int] = consumer._committed_offset
    return committed


@contextlib.contextmanager
def admin_and_consumer(
    client: KafkaClientConfig, client_id: str, timeout_ms: int = 5000
) -> Iterator[tuple[Any, Any]]:
    """kafka-python's admin client and a group-less consumer, closed on exit: what a lag reading
    asks (committed offsets, end offsets), and the chaos probes' leaders and end offsets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient

    options = {**client.kafka_python(), "request_timeout_ms": timeout_ms}
    admin = KafkaAdminClient(**options, client_id=client_id)
    try:
        consumer = KafkaConsumer(**options, client_id=client_id, group_id=None)
        try:
            yield admin, consumer
        finally:
            consumer.close()
    finally:
        admin.close()


def group_lag_by_partition(
    client: KafkaClientConfig, group: str, topics: Iterable[str], timeout_ms: int = 5000
) -> dict[str, int]:
    """`topic[partition]` → records `group` has not committed yet, for the partitions that lag,
    over `topics` and any other topic the group committed (a partition never committed counts
    from offset 0).

    A client error leaves as `BrokerError`; a retriable one (the group's coordinator moved, a
    leader being elected, a lost connection) is "not yet" to a wait (`is_retriable`).
    """
    from kafka import TopicPartition

    with (
        kafka_errors(f"reading the lag of group {group}"),
        admin_and_consumer(client, "ardary-lag", timeout_ms) as (admin, consumer),
    ):
        committed = (admin.list_group_offsets(group) or {}).get(group) or {}
        names = set(topics) | {tp.topic for tp in committed}
        tps = [
            TopicPartition(t, p)
            for t in sorted(names)
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        lag: dict[str, int] = {}
        for tp, end in consumer.end_offsets(tps).items():
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            if int(end) > offset:
                lag[f"{tp.topic}[{tp.partition}]"] = int(end) - offset
        return lag


def group_lag(client: KafkaClientConfig, group: str, topics: Iterable[str]) -> int:
    """Records of `topics`, and of any other topic the group committed, not yet committed."""
    return sum(group_lag_by_partition(client, group, topics).values())

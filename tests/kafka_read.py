"""Read a whole topic back, raw, with no consumer group: what the integration tests compare."""

from __future__ import annotations

import time
import warnings
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

__all__ = ["read_topic"]


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of every partition of `topic` up to its end offsets at the call.

    kafka-python `ConsumerRecord`s (partition, offset, key, value, ...), in order per partition.
    Fails when the end is not reached within `timeout` seconds.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"no topic {topic}"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{topic} not read back within {timeout} s"
            for messages in consumer.poll(timeout_ms=500).values():
                out.extend(messages)
        return out
    finally:
        consumer.close()

"""Reading topics without a consumer group (whole topics, one partition since a time).

A group-less consumer is assigned its partitions by hand and commits nothing: every process
that runs one reads what it needs for itself (e.g. the outbound agent's copy of `sms.optouts`,
which is keyed by phone and so not co-partitioned with anything the agent consumes). `client` is
aiokafka's consumer keyword arguments saying where the brokers are and how to reach them
(`bootstrap_servers`, and the security settings of a secured cluster). Client errors leave these
functions as `BrokerError` (`kafka_errors`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pipeline.errors import BrokerError
from pipeline.kafka.errors import kafka_errors

__all__ = ["TopicRecord", "follow_topic", "read_partition_since", "topic_partitions"]

FOLLOW_POLL_MS = 500
READ_POLL_MS = 1000


class TopicRecord(NamedTuple):
    """One record as read: where it sits, its key and its value (None: a tombstone)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def topic_partitions(consumer: Any, topic: str, within: float = 30.0) -> list[int]:
    """The partition ids of `topic`, asking the broker again until it lists them.

    aiokafka's public `partitions_for_topic` answers from the client's cached metadata only,
    which knows no topic a group-less consumer has not asked about; its client's
    `force_metadata_update` is the refresh (no public equivalent in aiokafka 0.14).
    """
    deadline = time.monotonic() + within
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise BrokerError(f"topic {topic} has no partitions (not created?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


def _consumer(client: Mapping[str, Any], **settings: Any) -> Any:
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**client, group_id=None, enable_auto_commit=False, **settings)


async def follow_topic(
    client: Mapping[str, Any],
    topic: str,
    apply: Callable[[TopicRecord], None],
    caught_up: Callable[[], None],
) -> None:
    """Read every partition of `topic` from the beginning, forever, calling `apply` per record.

    `caught_up` is called once, as soon as every partition has been read up to the end offset
    it had when this started (at once for an empty topic): from then on the caller's view is
    at least as recent as the topic was at start-up. Returns only by cancellation or an error.
    """
    from aiokafka import TopicPartition

    consumer = _consumer(client, auto_offset_reset="earliest")
    try:
        with kafka_errors(f"cannot follow {topic}"):
            await consumer.start()
            tps = [TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends: dict[Any, int] | None = await consumer.end_offsets(tps)
            while True:
                if ends is not None and await _reached(consumer, ends):
                    ends = None
                    caught_up()
                batches = await consumer.getmany(timeout_ms=FOLLOW_POLL_MS)
                for tp, messages in batches.items():
                    for m in messages:
                        apply(TopicRecord(tp.partition, m.offset, m.key, m.value))
    finally:
        await consumer.stop()


async def _reached(consumer: Any, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if int(await consumer.position(tp)) < end:
            return False
    return True


async def read_partition_since(
    client: Mapping[str, Any], topic: str, partition: int, since: datetime
) -> list[TopicRecord]:
    """The records of one partition from the first one stamped at or after `since` up to the
    end offset the partition has now (nothing if no record is that recent)."""
    from aiokafka import TopicPartition

    consumer = _consumer(client)
    tp = TopicPartition(topic, partition)
    found: list[TopicRecord] = []
    try:
        with kafka_errors(f"cannot read {topic}"):
            await consumer.start()
            consumer.assign([tp])
            offsets = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)})
            end = (await consumer.end_offsets([tp]))[tp]
            start = offsets[tp].offset if offsets.get(tp) is not None else end
            consumer.seek(tp, start)
            while int(await consumer.position(tp)) < end:
                batches = await consumer.getmany(tp, timeout_ms=READ_POLL_MS)
                for m in batches.get(tp, []):
                    found.append(TopicRecord(partition, m.offset, m.key, m.value))
    finally:
        await consumer.stop()
    return found

"""PartitionBatches against the real broker: every record lands once, in its partition, in order."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.agents.produce import PartitionBatches, partition_of

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

pytestmark = pytest.mark.integration


def read_all(bootstrap: str, topic: str, partitions: int) -> list[tuple[int, bytes, bytes | None]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[tuple[int, bytes, bytes | None]] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "topic not read back within 30 s"
            for tp, messages in consumer.poll(timeout_ms=1000).items():
                out.extend((tp.partition, m.key, m.value) for m in messages)
        return out
    finally:
        consumer.close()


async def test_records_land_in_the_given_partitions_in_order(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("batches", partitions=3)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=True, max_batch_size=16384
    )
    await producer.start()
    try:
        batches = PartitionBatches(producer)
        sent: list[tuple[int, bytes, bytes | None]] = []
        for i in range(600):  # ~300 B each: several full batches per partition
            record = (i % 3, f"k{i}".encode(), f"v{i}-".encode() * 40)
            batches.add(topic, *record)
            sent.append(record)
        big = (1, b"big", b"x" * 40_000)  # more than a whole batch
        tombstone = (2, b"k2", None)
        for record in (big, tombstone):
            batches.add(topic, *record)
            sent.append(record)
        futures = await batches.send()
        for future in futures:
            await future
        assert batches.records == 0
        assert await batches.send() == []  # nothing left queued
    finally:
        await producer.stop()

    got = read_all(kafka_bootstrap, topic, 3)
    for partition in range(3):
        mine = [r for r in sent if r[0] == partition and r is not big]
        theirs = [r for r in got if r[0] == partition and r[1] != b"big"]
        assert theirs == mine  # every record once, in the order it was added
    assert [r for r in got if r[1] == b"big"] == [big]


async def test_partition_of_matches_the_producers_keyed_partitioner(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    other = make_topic("layout-other", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(20):
            key = f"id-{i}".encode()
            sent = await producer.send_and_wait(other, b"v", key=key)
            # a different layout than the sources' (4): the key decides, as for any producer
            assert partition_of(key, 3, partitions=3, sources=4) == sent.partition
    finally:
        await producer.stop()


def test_partition_of_keeps_the_source_partition_for_the_same_layout() -> None:
    assert partition_of(b"id-1", 3, partitions=4, sources=4) == 3

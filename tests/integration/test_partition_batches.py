"""PartitionBatches against the real broker: every record lands once, in its partition, in order."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.kafka.produce import PartitionBatches, partition_of
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration


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
        big: tuple[int, bytes, bytes | None] = (1, b"big", b"x" * 40_000)  # more than a batch
        tombstone: tuple[int, bytes, bytes | None] = (2, b"k2", None)
        for extra in (big, tombstone):
            batches.add(topic, *extra)
            sent.append(extra)
        futures = await batches.send()
        for future in futures:
            await future
        assert await batches.send() == []  # nothing left queued
    finally:
        await producer.stop()

    got = [(r.partition, r.key, r.value) for r in read_topic(kafka_bootstrap, topic)]
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


async def test_a_topic_sent_to_stays_in_the_producers_metadata_when_another_is_added(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    """aiokafka asks only for the topics it tracks once it tracks any, and replaces its view with
    the answer: a topic known from the first, full answer dropped out when a topic created later
    was sent to, and a batch queued for it waited for a leader no refresh returned (the stalled
    worker of `bench e2e`). `PartitionBatches` tracks every topic it sends to (`track_topic`)."""
    old = make_topic("tracked-old", partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        batches = PartitionBatches(producer)
        for _ in range(50):  # known from a full answer (nothing tracked yet), as at a start
            if producer.client.cluster.partitions_for_topic(old):
                break
            await producer.client.force_metadata_update()
        batches.add(old, 1, b"k", b"v")
        await batches.send_and_wait()
        new = make_topic("tracked-new", partitions=1)  # created after the producer started
        assert await producer.partitions_for(new) == {0}  # a send to it refreshes the metadata
        assert producer.client.cluster.partitions_for_topic(old) == {0, 1}
    finally:
        await producer.stop()

"""Records an agent produces for one batch of events, handed to Kafka as one batch per partition.

aiokafka's `send()` costs ~20 µs of Python per record (metadata check, partitioner, accumulator,
a future), more than the correlate agent's own work on an event. Appending to a record batch
per topic-partition and submitting each batch once (`create_batch`/`send_batch`) costs a few
µs per record. The partition is given by the caller: the agents write a key to the partition
its events came from (co-partitioned topics, and faust's rule for changelogs), so no
partitioner runs unless a topic's partition count differs (`partition_of`). The batches go
through faust's own (idempotent) producer.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["PartitionBatches", "partition_of"]


def partition_of(key: bytes, source_partition: int, partitions: int, sources: int) -> int:
    """The partition for `key` in a topic of `partitions` partitions: its events' partition
    when that equals the (co-partitioned) sources' count, else the default keyed partitioner's
    choice (murmur2, as every Kafka client's default)."""
    if partitions == sources:
        return source_partition
    from aiokafka.partitioner import murmur2

    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class PartitionBatches:
    """Collect (topic, partition, key, value) records; `send()` submits them, batch by batch."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer  # an aiokafka.AIOKafkaProducer
        self._open: dict[tuple[str, int], Any] = {}
        self._full: list[tuple[tuple[str, int], Any]] = []
        self._single: list[tuple[str, int, bytes, bytes | None]] = []

    def add(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        """Queue one record (None value: a tombstone); nothing is sent before `send()`."""
        tp = (topic, partition)
        builder = self._open.get(tp)
        if builder is None:
            builder = self._open[tp] = self._producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is not None:
            return
        self._full.append((tp, builder))
        builder = self._open[tp] = self._producer.create_batch()
        if builder.append(key=key, value=value, timestamp=None) is None:
            # larger than a whole batch: the producer's own path splits or refuses it
            self._single.append((topic, partition, key, value))

    async def send(self) -> list[asyncio.Future[Any]]:
        """Submit every queued record; returns delivery futures (await them for the acks)."""
        futures: list[asyncio.Future[Any]] = []
        batches = [*self._full, *self._open.items()]
        self._open, self._full = {}, []
        for (topic, partition), builder in batches:
            if builder.record_count():
                futures.append(await self._producer.send_batch(builder, topic, partition=partition))
        for topic, partition, key, value in self._single:
            futures.append(await self._producer.send(topic, value, key=key, partition=partition))
        self._single = []
        return futures

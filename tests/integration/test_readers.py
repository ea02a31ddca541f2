"""The group-less readers against the real broker: a whole topic followed with its caught-up
signal, one partition read since a time, and a client failure leaving as a BrokerError."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.errors import BrokerError
from pipeline.kafka.readers import TopicRecord, follow_topic, read_partition_since

pytestmark = pytest.mark.integration


async def _produce(bootstrap: str, topic: str, records: list[tuple[int, bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for partition, key, value in records:
            await (await producer.send(topic, value, key=key, partition=partition))
    finally:
        await producer.stop()


async def _until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_follow_reads_every_partition_and_says_when_it_caught_up(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("follow", partitions=3)
    await _produce(kafka_bootstrap, topic, [(p, b"k%d" % p, b"before") for p in range(3)])
    seen: list[TopicRecord] = []
    seen_at_catch_up: list[int] = []
    follow = asyncio.create_task(
        follow_topic(
            {"bootstrap_servers": kafka_bootstrap},
            topic,
            seen.append,
            lambda: seen_at_catch_up.append(len(seen)),
        )
    )
    try:
        await _until(lambda: bool(seen_at_catch_up), 30, "the caught-up signal")
        assert seen_at_catch_up == [3]  # everything there at start, before the signal
        await _produce(kafka_bootstrap, topic, [(1, b"k1", b"after")])
        await _until(lambda: len(seen) == 4, 30, "the record produced later")
    finally:
        follow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follow
    assert sorted(r.partition for r in seen[:3]) == [0, 1, 2]
    assert (seen[3].partition, seen[3].key, seen[3].value) == (1, b"k1", b"after")
    assert seen_at_catch_up == [3]  # once


async def test_read_partition_since_reads_from_that_time_to_the_end(
    kafka_bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("since", partitions=2)
    await _produce(kafka_bootstrap, topic, [(0, b"old", b"1"), (1, b"other", b"2")])
    middle = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await _produce(kafka_bootstrap, topic, [(0, b"new", b"3"), (0, b"newer", b"4")])
    client = {"bootstrap_servers": kafka_bootstrap}
    records = await read_partition_since(client, topic, 0, middle)
    assert [(r.key, r.value) for r in records] == [(b"new", b"3"), (b"newer", b"4")]
    later = await read_partition_since(client, topic, 0, datetime.now(UTC) + timedelta(hours=1))
    assert later == []


async def test_an_unreachable_broker_is_a_broker_error() -> None:
    client = {"bootstrap_servers": "127.0.0.1:9", "request_timeout_ms": 1000}
    with pytest.raises(BrokerError, match=r"cannot read t\.nothing"):
        await read_partition_since(client, "t.nothing", 0, datetime.now(UTC))

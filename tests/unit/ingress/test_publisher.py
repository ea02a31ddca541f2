"""KafkaPublisher's batching and broker up/down logic, against a stub aiokafka producer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiokafka
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import DefaultPartitioner

from pipeline.errors import BrokerError
from pipeline.kafka import publisher as publisher_module
from pipeline.kafka.publisher import KafkaPublisher
from tests.polling import wait_until_async

PARTITIONS = [0, 1, 2]


class StubClient:
    def __init__(self) -> None:
        self.reachable = True
        self._topics: set[str] = set()  # what aiokafka asks metadata for (track_topic)

    async def fetch_all_metadata(self) -> object:
        if not self.reachable:
            raise KafkaError("no brokers")
        return object()


class StubBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes]] = []
        self.headers: list[Any] = []

    def append(
        self, *, key: bytes | None, value: bytes, timestamp: None, headers: Any = None
    ) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value))
        self.headers.append(headers)
        return object()


class StubProducer:
    instances: list[StubProducer] = []
    start_hangs = False  # aiokafka waiting for a producer id from a node that went away

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.client = StubClient()
        self.batches: list[tuple[str, int, list[tuple[bytes | None, bytes]]]] = []
        self.mode = "ack"  # ack | error | never | held (acknowledged by `ack_held`)
        self.held: list[asyncio.Future[None]] = []
        self.failing_topics: set[str] = set()
        self.capacity = 1000
        self.started = self.stopped = False
        self.created: list[StubBatch] = []
        StubProducer.instances.append(self)

    @property
    def sends(self) -> int:
        return len(self.batches)

    async def start(self) -> None:
        if StubProducer.start_hangs:
            await asyncio.Event().wait()
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def partitions_for(self, topic: str) -> set[int]:
        return set(PARTITIONS)

    def create_batch(self) -> StubBatch:
        batch = StubBatch(self.capacity)
        self.created.append(batch)
        return batch

    async def send_batch(self, batch: StubBatch, topic: str, *, partition: int) -> Any:
        self.batches.append((topic, partition, batch.records))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.mode == "error" or topic in self.failing_topics:
            future.set_exception(KafkaConnectionError("connection refused"))
        elif self.mode == "ack":
            future.set_result(None)
        elif self.mode == "held":
            self.held.append(future)
        return future

    def ack_held(self) -> None:
        for future in self.held:
            future.set_result(None)
        self.held.clear()


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Callable[[], StubProducer]:
    StubProducer.instances.clear()
    monkeypatch.setattr(StubProducer, "start_hangs", False)
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", StubProducer)
    return lambda: StubProducer.instances[-1]


async def test_producer_is_idempotent_with_acks_all(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h1:9092,h2:9092")
    await publisher.start()
    config = stub().config
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["bootstrap_servers"] == ["h1:9092", "h2:9092"]
    await publisher.publish([("t", b"k", b"v")], within=1.0)
    await publisher.stop()
    assert stub().stopped


async def test_a_requests_headers_go_on_each_of_its_records(
    stub: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    traced = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    await publisher.publish([("a", b"k", b"v"), ("b", b"k", b"v")], within=1.0, headers=traced)
    await publisher.publish([("a", b"k", b"w")], within=1.0)
    await publisher.stop()
    assert [h for batch in stub().created for h in batch.headers] == [traced, traced, None]


async def test_every_topic_published_to_is_tracked_in_the_metadata(
    stub: Callable[[], StubProducer],
) -> None:
    """aiokafka drops an untracked topic from its metadata at the next refresh (track_topic)."""
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    await publisher.publish([("a", b"k", b"v"), ("b", b"k", b"v")], within=1.0)
    await publisher.stop()
    assert stub().client._topics == {"a", "b"}


async def test_keys_go_where_aiokafka_would_put_them(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    keys = [f"id-{n}".encode() for n in range(40)] + [b"+33612345678", b""]
    for key in keys:
        await publisher.publish([("t", key, b"v")], within=1.0)
    await publisher.stop()
    placed = {records[0][0]: partition for _, partition, records in stub().batches}
    assert placed == {key: DefaultPartitioner()(key, PARTITIONS, PARTITIONS) for key in keys}


async def test_requests_of_one_loop_turn_share_batches(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    items = [("t", f"k{n}".encode(), b"v%d" % n) for n in range(60)]
    await asyncio.gather(*(publisher.publish([item], within=1.0) for item in items))
    await publisher.stop()
    producer = stub()
    assert producer.sends <= len(PARTITIONS)  # one batch per partition, not one per record
    delivered = sorted((key, value) for _, _, records in producer.batches for key, value in records)
    assert delivered == sorted((key, value) for _, key, value in items)


async def test_a_full_batch_continues_in_the_next(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    stub().capacity = 2
    await publisher.publish([("t", b"same", b"v%d" % n) for n in range(5)], within=1.0)
    await publisher.stop()
    assert [len(records) for _, _, records in stub().batches] == [2, 2, 1]
    values = [value for _, _, records in stub().batches for _, value in records]
    assert values == [b"v%d" % n for n in range(5)]  # one partition keeps their order


async def test_a_busy_partition_collects_its_next_batch(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h:9092")
    await publisher.start()
    producer = stub()
    producer.mode = "held"
    first = asyncio.create_task(publisher.publish([("t", b"same", b"v0")], within=5.0))
    await wait_until_async(lambda: producer.sends == 1)
    rest = [
        asyncio.create_task(publisher.publish([("t", b"same", b"v%d" % n)], within=5.0))
        for n in range(1, 4)
    ]
    for _ in range(5):  # turns of the loop: nothing more may go while v0 is unacknowledged
        await asyncio.sleep(0)
    assert producer.sends == 1 and not first.done()
    producer.ack_held()
    await first
    await wait_until_async(lambda: producer.sends == 2)
    assert [value for _, value in producer.batches[1][2]] == [b"v1", b"v2", b"v3"]
    producer.ack_held()
    await asyncio.gather(*rest)
    await publisher.stop()


async def test_one_failed_record_of_two_fails_the_request(
    stub: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092", probe_interval=10)
    await publisher.start()
    stub().failing_topics = {"b"}
    with pytest.raises(BrokerError):
        await publisher.publish([("a", b"k", b"v"), ("b", b"k", b"v")], within=1.0)
    await publisher.stop()


async def test_a_bug_in_the_flush_fails_the_request_not_the_publisher(
    stub: Callable[[], StubProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher = KafkaPublisher("h:9092", probe_interval=10)
    await publisher.start()
    producer = stub()

    def broken() -> StubBatch:
        raise TypeError("a bug")

    monkeypatch.setattr(producer, "create_batch", broken)
    with pytest.raises(BrokerError):
        await publisher.publish([("t", b"k", b"v")], within=5.0)
    assert publisher.broker_up  # a bug says nothing about the broker
    monkeypatch.undo()
    await publisher.publish([("t", b"k", b"v")], within=5.0)  # the flusher still runs
    await publisher.stop()


async def test_failure_marks_down_fails_fast_then_recovers(
    stub: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092", probe_interval=0.01, ready_cache_seconds=0)
    await publisher.start()
    producer = stub()
    producer.mode = "error"
    producer.client.reachable = False
    with pytest.raises(BrokerError):
        await publisher.publish([("t", None, b"v")], within=1.0)
    assert not publisher.broker_up
    sends = producer.sends
    with pytest.raises(BrokerError):
        await publisher.publish([("t", None, b"v")], within=1.0)
    assert producer.sends == sends, "while down, publish must fail fast without sending"
    assert not await publisher.ready()
    producer.mode = "ack"
    producer.client.reachable = True
    await wait_until_async(lambda: publisher.broker_up)
    await publisher.publish([("t", None, b"v")], within=1.0)
    assert await publisher.ready()
    await publisher.stop()


class FakeClock:
    """The publisher's `time` module, with a monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_unacknowledged_record_fails_by_its_deadline(
    stub: Callable[[], StubProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(publisher_module, "time", clock)
    publisher = KafkaPublisher("h:9092", probe_interval=10)
    await publisher.start()
    stub().mode = "never"
    waiting = asyncio.create_task(publisher.publish([("t", None, b"v")], within=5.0))
    await wait_until_async(lambda: stub().sends == 1)
    assert not waiting.done()
    # One watchdog tick before the deadline: the next check fails the request, so the caller
    # never waits past its bound (the clock does not move on while the test waits).
    clock.now += 5.0 - publisher_module._WATCHDOG_TICK
    await wait_until_async(waiting.done)
    with pytest.raises(TimeoutError):
        waiting.result()
    assert not publisher.broker_up
    await publisher.stop()


async def test_publish_before_start_is_a_broker_error() -> None:
    with pytest.raises(BrokerError):
        await KafkaPublisher("h:9092").publish([("t", None, b"v")], within=1.0)


async def test_a_start_that_never_ends_is_bounded_by_the_request_timeout(
    stub: Callable[[], StubProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chaos run's ingress, restarted while the cluster stopped, waited in aiokafka's
    # start() for good: with a spool it must start down and serve (spooling) instead.
    monkeypatch.setattr(StubProducer, "start_hangs", True)
    with pytest.raises(BrokerError, match="cannot reach Kafka at h:9092: TimeoutError"):
        await KafkaPublisher("h:9092", request_timeout_ms=50).start()
    assert stub().stopped
    publisher = KafkaPublisher("h:9092", request_timeout_ms=50, probe_interval=0.01)
    await publisher.start(wait_for_broker=False)
    assert not publisher.broker_up
    monkeypatch.setattr(StubProducer, "start_hangs", False)
    await wait_until_async(lambda: publisher.broker_up)
    await publisher.publish([("t", None, b"v")], within=1.0)
    await publisher.stop()

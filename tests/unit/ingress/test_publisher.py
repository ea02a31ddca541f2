"""KafkaPublisher's broker up/down logic, against a stub aiokafka producer (no broker)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiokafka
import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError

from pipeline.errors import BrokerError
from pipeline.ingress.publisher import KafkaPublisher


class StubClient:
    def __init__(self) -> None:
        self.reachable = True

    async def fetch_all_metadata(self) -> object:
        if not self.reachable:
            raise KafkaError("no brokers")
        return object()


class StubProducer:
    instances: list[StubProducer] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.client = StubClient()
        self.sends = 0
        self.mode = "ack"  # ack | error | never
        self.started = self.stopped = False
        StubProducer.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes | None) -> asyncio.Future[None]:
        self.sends += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.mode == "ack":
            future.set_result(None)
        elif self.mode == "error":
            future.set_exception(KafkaConnectionError("connection refused"))
        return future


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Callable[[], StubProducer]:
    StubProducer.instances.clear()
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", StubProducer)
    return lambda: StubProducer.instances[-1]


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not met before the deadline")
        await asyncio.sleep(0.01)


async def test_producer_is_idempotent_with_acks_all(stub: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h1:9092,h2:9092")
    await publisher.start()
    config = stub().config
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["bootstrap_servers"] == ["h1:9092", "h2:9092"]
    await publisher.publish("t", b"k", b"v")
    await publisher.stop()
    assert stub().stopped


async def test_failure_marks_down_fails_fast_then_recovers(
    stub: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092", probe_interval=0.01, ready_cache_seconds=0)
    await publisher.start()
    producer = stub()
    producer.mode = "error"
    producer.client.reachable = False
    with pytest.raises(BrokerError):
        await publisher.publish("t", None, b"v")
    assert not publisher.broker_up
    sends = producer.sends
    with pytest.raises(BrokerError):
        await publisher.publish("t", None, b"v")
    assert producer.sends == sends, "while down, publish must fail fast without sending"
    assert not await publisher.ready()
    producer.mode = "ack"
    producer.client.reachable = True
    await wait_for(lambda: publisher.broker_up)
    await publisher.publish("t", None, b"v")
    assert await publisher.ready()
    await publisher.stop()


async def test_unacknowledged_record_times_out_as_broker_error(
    stub: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092", timeout=0.05, probe_interval=10)
    await publisher.start()
    stub().mode = "never"
    with pytest.raises(BrokerError):
        await publisher.publish("t", None, b"v")
    assert not publisher.broker_up
    await publisher.stop()


async def test_publish_before_start_is_a_broker_error() -> None:
    with pytest.raises(BrokerError):
        await KafkaPublisher("h:9092").publish("t", None, b"v")

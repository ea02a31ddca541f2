"""The publisher's periodic broker probe and its ack-latency observation, against a stub producer.

`ardary_ingress_broker_up` follows `KafkaPublisher.broker_up`: it must fall within a bounded
number of probe periods once metadata requests fail, even when nothing is published, and come
back once one succeeds. Bounds are counted in probes, never in wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiokafka
import pytest
from aiokafka.errors import KafkaError

from pipeline.errors import BrokerError
from pipeline.ingress.app import create_app
from pipeline.kafka.publisher import PROBE_MISSES, KafkaPublisher, watch_broker
from pipeline.settings import Settings
from tests.polling import wait_until_async
from tests.unit.ingress.test_publisher import StubProducer

FAST = {"probe_period": 0.001, "probe_interval": 0.001}


class CountingClient:
    """A producer's client whose metadata requests the test turns on and off, and counts."""

    def __init__(self) -> None:
        self.reachable = True
        self.requests = 0
        self.failed_while_up = 0  # failed requests answered while the broker was deemed up
        self.up: Callable[[], bool] = lambda: True
        self._topics: set[str] = set()

    async def fetch_all_metadata(self) -> object:
        self.requests += 1
        if not self.reachable:
            self.failed_while_up += self.up()
            raise KafkaError("no brokers")
        return object()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Callable[[], StubProducer]:
    StubProducer.instances.clear()
    monkeypatch.setattr(StubProducer, "start_hangs", False)
    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", StubProducer)

    def latest() -> StubProducer:
        stub = StubProducer.instances[-1]
        if not isinstance(stub.client, CountingClient):
            stub.client = CountingClient()  # type: ignore[assignment]
        return stub

    return latest


async def test_broker_up_falls_within_a_few_probes_without_any_publish_and_comes_back(
    producer: Callable[[], StubProducer],
) -> None:
    publisher = KafkaPublisher("h:9092", **FAST)
    await publisher.start()
    client: Any = producer().client
    client.up = lambda: publisher.broker_up
    await wait_until_async(lambda: client.requests >= 3)
    assert publisher.broker_up
    client.reachable = False
    await wait_until_async(lambda: not publisher.broker_up)
    assert client.failed_while_up == PROBE_MISSES  # down at the second miss in a row
    with pytest.raises(BrokerError):  # down: publish fails at once, the ingress spools
        await publisher.publish([("t", None, b"v")], within=1.0)
    assert producer().sends == 0
    client.reachable = True
    await wait_until_async(lambda: publisher.broker_up)
    await publisher.publish([("t", None, b"v")], within=1.0)
    await publisher.stop()


async def test_one_slow_probe_is_not_an_outage(producer: Callable[[], StubProducer]) -> None:
    publisher = KafkaPublisher("h:9092", **FAST)
    await publisher.start()
    client: Any = producer().client
    misses = {"left": 1}
    real = client.fetch_all_metadata

    async def once_late() -> object:
        if misses["left"]:
            misses["left"] -= 1
            raise KafkaError("timed out")
        return await real()

    client.fetch_all_metadata = once_late
    await wait_until_async(lambda: client.requests >= 5)
    assert publisher.broker_up
    await publisher.stop()


async def test_watch_broker_reports_down_after_the_misses_and_up_after_a_success() -> None:
    answers = iter([True, False, True, False, False, False, True])
    reports: list[bool] = []
    done = asyncio.Event()

    async def check() -> bool:
        try:
            return next(answers)
        except StopIteration:
            done.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable") from None

    watcher = asyncio.create_task(watch_broker(check, reports.append, period=0, confirm=0))
    await asyncio.wait_for(done.wait(), 5)
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    # one miss between two successes says nothing; the second of three says down (the third too)
    assert reports == [True, True, False, False, True]


async def test_each_acknowledged_batch_is_timed_once(producer: Callable[[], StubProducer]) -> None:
    acks: list[float] = []
    publisher = KafkaPublisher("h:9092", probe_period=60, ack_observer=acks.append)
    await publisher.start()
    await publisher.publish([("t", b"same", b"v1"), ("t", b"same", b"v2")], within=1.0)
    assert len(acks) == producer().sends == 1 and acks[0] >= 0.0
    producer().mode = "error"
    with pytest.raises(BrokerError):
        await publisher.publish([("t", b"k", b"v")], within=1.0)
    assert len(acks) == 1  # a failed batch is not an ack
    await publisher.stop()


async def test_the_ingress_exports_the_ack_histogram_and_the_probed_broker_state(
    producer: Callable[[], StubProducer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "h:9092")
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    await app.startup()
    publisher: Any = app.publisher
    await publisher.publish([("t", b"k", b"v")], within=1.0)
    text = app.metrics.render().decode()
    assert 'ardary_kafka_produce_ack_seconds_count{process="ingress"} 1.0' in text
    assert "ardary_ingress_broker_up 1.0" in text
    publisher._probe_interval = 0.001  # the test's pace for the probe that brings it back
    publisher._probed(False)  # the periodic probe's verdict after its misses in a row
    assert "ardary_ingress_broker_up 0.0" in app.metrics.render().decode()
    await wait_until_async(lambda: publisher.broker_up)  # the broker still answers
    assert "ardary_ingress_broker_up 1.0" in app.metrics.render().decode()
    await app.shutdown()

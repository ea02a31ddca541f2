"""`PartitionBatches` times each record batch from hand-over to ack for the app's observer
(`ardary_kafka_produce_ack_seconds{process="worker"}`): one observation per acknowledged
batch, none for a failure, the resend's ack for a batch sent again."""

from __future__ import annotations

import types

import aiokafka.errors as errors
import pytest

from pipeline.kafka.produce import PartitionBatches, app_producer, observe_acks
from tests.unit.kafka.test_batch_resend import Producer, _no_backoff, _until  # noqa: F401


async def test_each_acknowledged_batch_is_observed_once() -> None:
    producer = Producer()
    seen: list[float] = []
    batches = PartitionBatches(producer, ack_observer=seen.append)
    batches.add("t", 0, b"k", b"1")
    batches.add("t", 0, b"k", b"2")
    batches.add("t", 1, b"k", b"3")
    first, second = await batches.send()
    producer.settle(0, offset=10)
    await first
    assert len(seen) == 1 and seen[0] >= 0.0
    producer.settle(1, error=errors.MessageSizeTooLargeError())
    with pytest.raises(errors.MessageSizeTooLargeError):
        await second
    assert len(seen) == 1  # a failed batch is no ack


async def test_a_resent_batch_is_observed_when_the_resend_is_acknowledged() -> None:
    producer = Producer()
    seen: list[float] = []
    batches = PartitionBatches(producer, ack_observer=seen.append)
    batches.add("t", 0, b"k", b"1")
    (delivery,) = await batches.send()
    producer.settle(0, error=errors.OutOfOrderSequenceNumber())
    await _until(lambda: len(producer.sent) == 2)
    assert seen == []
    producer.settle(1, offset=5)
    await delivery
    assert len(seen) == 1


class App:
    """A faust app as `app_producer` sees it (weak-referenceable, as faust's is)."""

    def __init__(self, producer: Producer) -> None:
        self.producer = types.SimpleNamespace(_ensure_producer=lambda: producer)


async def test_the_apps_observer_reaches_every_batch_on_its_producer() -> None:
    producer = Producer()
    app = App(producer)
    seen: list[float] = []
    observe_acks(app, seen.append)
    batches = PartitionBatches(app_producer(app))  # as the correlate agent builds its own
    batches.add("t", 0, b"k", b"1")
    (delivery,) = await batches.send()
    producer.settle(0, offset=1)
    await delivery
    assert len(seen) == 1
    other = PartitionBatches(Producer())  # another app's producer: not observed
    other.add("t", 0, b"k", b"1")
    await other.send()
    assert len(seen) == 1

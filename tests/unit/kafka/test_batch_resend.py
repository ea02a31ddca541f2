"""`PartitionBatches` sends a failed batch again when that cannot reorder its partition.

A fake of aiokafka's batch API whose futures the test settles: a batch refused after the
producer lost its id (OutOfOrderSequenceNumber) is sent again and its delivery future resolves
with the resend's offsets; a refusal a resend cannot cure, or a failure once a newer batch of
the same partition was handed over, stands (the agent crashes; its replay keeps the order).
"""

from __future__ import annotations

import asyncio
import types
from typing import Any

import aiokafka.errors as errors
import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition

from pipeline.kafka import produce
from pipeline.kafka.produce import PartitionBatches


class Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, list[bytes], asyncio.Future[Any]]] = []
        self.client = types.SimpleNamespace(_topics=set())

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, [b""] * batch.record_count(), future))
        return future

    def settle(self, index: int, offset: int | None = None, error: Exception | None = None) -> None:
        topic, partition, _, future = self.sent[index]
        if error is not None:
            future.set_exception(error)
        else:
            tp = TopicPartition(topic, partition)
            future.set_result(RecordMetadata(topic, partition, tp, offset, -1, 0, 0))


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    real_sleep = asyncio.sleep
    monkeypatch.setattr(produce.asyncio, "sleep", lambda s: real_sleep(0))


async def _until(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_refused_batch_is_sent_again_and_acknowledged() -> None:
    producer = Producer()
    acked: list[tuple[int, int]] = []
    batches = PartitionBatches(producer)
    batches.on_ack("t", lambda partition, offset: acked.append((partition, offset)))
    for n in range(3):
        batches.add("t", 0, b"k", str(n).encode())
    (delivery,) = await batches.send()
    producer.settle(0, error=errors.OutOfOrderSequenceNumber())
    await _until(lambda: len(producer.sent) == 2)  # the resend: the same three records
    assert len(producer.sent[1][2]) == 3
    producer.settle(1, offset=40)
    meta = await delivery
    assert meta.offset == 40
    assert acked == [(0, 42)]  # the last record's offset, told once


@pytest.mark.parametrize(
    "error", [errors.MessageSizeTooLargeError(), errors.TopicAuthorizationFailedError()]
)
async def test_a_refusal_a_resend_cannot_cure_stands(error: Exception) -> None:
    producer = Producer()
    batches = PartitionBatches(producer)
    batches.add("t", 0, b"k", b"v")
    (delivery,) = await batches.send()
    producer.settle(0, error=error)
    with pytest.raises(type(error)):
        await delivery
    assert len(producer.sent) == 1


async def test_no_resend_behind_a_newer_batch_of_the_partition() -> None:
    producer = Producer()
    first, second = PartitionBatches(producer), PartitionBatches(producer)
    first.add("t", 0, b"k", b"old")
    (old,) = await first.send()
    second.add("t", 0, b"k", b"new")
    (new,) = await second.send()
    producer.settle(0, error=errors.OutOfOrderSequenceNumber())
    with pytest.raises(errors.OutOfOrderSequenceNumber):
        await old  # sent again it would land after "new"
    assert len(producer.sent) == 2
    producer.settle(1, offset=7)
    assert (await new).offset == 7


async def test_another_partition_does_not_stop_a_resend() -> None:
    producer = Producer()
    batches = PartitionBatches(producer)
    batches.add("t", 0, b"k", b"a")
    batches.add("t", 1, b"k", b"b")
    first, _ = await batches.send()
    producer.settle(0, error=errors.UnknownProducerId())
    await _until(lambda: len(producer.sent) == 3)
    producer.settle(2, offset=5)
    assert (await first).offset == 5


class BuildingProducer(Producer):
    """Keeps each batch it is handed, built, to read its records' headers back."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[list[list[tuple[str, bytes]]]] = []

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        from aiokafka.record.default_records import DefaultRecordBatch

        future = await super().send_batch(batch, topic, partition=partition)
        self.built.append([r.headers for r in DefaultRecordBatch(bytes(batch._build()))])
        return future


async def test_headers_go_into_the_batch_and_into_its_resend() -> None:
    producer = BuildingProducer()
    batches = PartitionBatches(producer)
    traced = [("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")]
    batches.add("t", 0, b"k", b"a", traced)
    batches.add("t", 0, b"k", b"b")
    (delivery,) = await batches.send()
    producer.settle(0, error=errors.OutOfOrderSequenceNumber())
    await _until(lambda: len(producer.sent) == 2)
    producer.settle(1, offset=3)
    await delivery
    assert producer.built == [[traced, []], [traced, []]]

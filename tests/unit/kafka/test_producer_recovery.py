"""The idempotent producer recovers from a failed batch with a new producer id (`idempotence`).

aiokafka's own accumulator and transaction manager, no broker: a batch is taken by the sender
(its sequence number assigned), then fails with each error that leaves the partition's
sequence broken; the producer must forget its id and sequences so the sender asks for a new
one. Without `install()` the id stays and every later batch would be refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiokafka.errors as errors
import pytest
from aiokafka.producer.message_accumulator import MessageAccumulator
from aiokafka.producer.transaction_manager import TransactionManager
from aiokafka.structs import TopicPartition

from pipeline.kafka import idempotence

TP = TopicPartition("t", 0)


class _Cluster:
    def leader_for_partition(self, tp: Any) -> int:
        return 1


def _accumulator() -> tuple[MessageAccumulator, TransactionManager]:
    txn = TransactionManager(transactional_id=None, transaction_timeout_ms=60_000)
    txn.set_pid_and_epoch(1000, 0)
    acc = MessageAccumulator(_Cluster(), 16_384, 0, 30, txn_manager=txn)
    return acc, txn


def _sent_batch(acc: MessageAccumulator, records: int = 3) -> Any:
    """A batch of `records` added and taken by the sender (drained: sequence assigned)."""
    builder = acc.create_builder()
    for n in range(records):
        builder.append(key=b"k", value=str(n).encode(), timestamp=None)
    acc._append_batch(builder, TP)
    nodes, _ = acc.drain_by_nodes(ignore_nodes=set())
    return nodes[1][TP]


FAILURES = [
    errors.OutOfOrderSequenceNumber(),
    errors.UnknownProducerId(),
    errors.ProducerFenced(),  # what aiokafka raises for InvalidProducerEpoch
    errors.InvalidProducerEpoch(),
    errors.NotLeaderForPartitionError(),  # a batch expired while its partition had no leader
    errors.KafkaTimeoutError(),
]


@pytest.fixture(autouse=True)
def _installed() -> None:
    idempotence.install()


@pytest.mark.parametrize("error", FAILURES, ids=lambda e: type(e).__name__)
async def test_a_failed_batch_makes_the_producer_take_a_new_id(error: Exception) -> None:
    acc, txn = _accumulator()
    batch = _sent_batch(acc)
    assert txn.sequence_number(TP) == 3  # the sender took its sequence numbers
    batch.failure(error)
    await asyncio.sleep(0)  # the future's done-callbacks
    assert not txn.has_pid()  # the sender asks for a new id before its next drain
    assert txn.sequence_number(TP) == 0  # and the partition starts again at 0
    txn.set_pid_and_epoch(1001, 0)  # what the sender's InitProducerId answer does
    assert txn.has_pid()


async def test_a_late_failure_under_the_old_id_leaves_the_new_one_alone() -> None:
    acc, txn = _accumulator()
    first, second = _sent_batch(acc), None
    acc._batches.clear()
    # a second batch taken under the same (old) id before the first failed
    builder = acc.create_builder()
    builder.append(key=b"k", value=b"x", timestamp=None)
    acc._append_batch(builder, TP)
    acc._pending_batches.discard(first)
    second = acc.drain_by_nodes(ignore_nodes=set())[0][1][TP]
    first.failure(errors.OutOfOrderSequenceNumber())
    await asyncio.sleep(0)
    txn.set_pid_and_epoch(1001, 0)  # the new id arrived
    second.failure(errors.OutOfOrderSequenceNumber())
    await asyncio.sleep(0)
    assert txn.producer_id == 1001  # not reset again by a batch of the old id


async def test_a_delivered_batch_keeps_the_id() -> None:
    acc, txn = _accumulator()
    batch = _sent_batch(acc)
    batch.done(base_offset=0)
    await asyncio.sleep(0)
    assert txn.producer_id == 1000 and txn.sequence_number(TP) == 3


async def test_an_expired_batch_without_a_leader_resets_the_id() -> None:
    """The outage case: no leader past the batch's time to live (request_timeout_ms)."""

    class NoLeader:
        def leader_for_partition(self, tp: Any) -> None:
            return None

    txn = TransactionManager(transactional_id=None, transaction_timeout_ms=60_000)
    txn.set_pid_and_epoch(1000, 0)
    acc = MessageAccumulator(NoLeader(), 16_384, 0, -1, txn_manager=txn)  # expired at once
    builder = acc.create_builder()
    builder.append(key=b"k", value=b"v", timestamp=None)
    future = await acc.add_batch(builder, TP, timeout=1)
    acc.drain_by_nodes(ignore_nodes=set())
    with pytest.raises(errors.NotLeaderForPartitionError):
        await future
    await asyncio.sleep(0)
    assert not txn.has_pid()


@pytest.mark.parametrize(
    ("error", "resend"),
    [
        (errors.OutOfOrderSequenceNumber(), True),
        (errors.UnknownProducerId(), True),
        (errors.ProducerFenced(), True),
        (errors.KafkaTimeoutError(), True),
        (errors.NotLeaderForPartitionError(), True),
        (errors.RequestTimedOutError(), True),
        (errors.MessageSizeTooLargeError(), False),
        (errors.TopicAuthorizationFailedError(), False),
        (ValueError("a bug"), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_resendable(error: BaseException, resend: bool) -> None:
    assert idempotence.resendable(error) is resend


def test_kafka_python_names_count_too() -> None:
    import kafka.errors

    assert idempotence.resendable(kafka.errors.OutOfOrderSequenceNumberError())
    assert idempotence.resendable(kafka.errors.UnknownProducerIdError())

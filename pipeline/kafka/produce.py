"""Records handed to Kafka as one record batch per topic-partition, not one `send()` each.

aiokafka's `send()` costs ~20 µs of Python per record (metadata check, partitioner, accumulator,
a future), more than the correlate agent's own work on an event. Appending to a record batch
per topic-partition and submitting each batch once (`create_batch`/`send_batch`) costs a few
µs per record. `OpenBatches` is that builder, shared by the agents' `PartitionBatches` and the
ingress's `KafkaPublisher`. Keys are partitioned as aiokafka's (and every Kafka client's)
default partitioner does (`partition_for`, murmur2), so co-partitioning with other producers
holds.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeAlias, TypeVar

from aiokafka.partitioner import murmur2

from pipeline.kafka.idempotence import resendable

__all__ = [
    "ACK_BUCKETS",
    "AckListener",
    "AckObserver",
    "Headers",
    "OpenBatches",
    "PartitionBatches",
    "TopicPartition",
    "app_producer",
    "observe_acks",
    "partition_for",
    "partition_of",
    "track_topic",
]

T = TypeVar("T")
TopicPartition = tuple[str, int]
Headers: TypeAlias = Sequence[tuple[str, bytes]] | None
"""A record's headers (the trace context, `pipeline.tracing`); None: none."""
Record = tuple[bytes | None, bytes | None, Headers]
"""(key, value, headers) of one record."""
RESEND_ATTEMPTS = 5  # a batch's records are sent again at most this often after a failure
AckListener = Callable[[int, int], None]
"""Told `(partition, offset)`: the broker acknowledged a partition's records up to `offset`."""
AckObserver = Callable[[float], None]
"""Told the seconds from handing a record batch to the producer until the broker acknowledged it
(`ardary_kafka_produce_ack_seconds`)."""
ACK_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Bucket bounds (s) of `ardary_kafka_produce_ack_seconds`, the same in every process so the
ingress's and the workers' histograms add up."""
_APP_ACK_OBSERVERS: weakref.WeakKeyDictionary[Any, AckObserver] = weakref.WeakKeyDictionary()
_ACK_OBSERVERS: weakref.WeakKeyDictionary[Any, AckObserver] = weakref.WeakKeyDictionary()


def partition_for(key: bytes | None, partitions: list[int]) -> int:
    """The partition the default keyed partitioner picks among `partitions` (random for None)."""
    if key is None:
        return int(random.choice(partitions))
    return int(partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)])


def partition_of(key: bytes, source_partition: int, partitions: int, sources: int) -> int:
    """The partition for `key` in a topic of `partitions` partitions: its events' partition
    when that equals the (co-partitioned) sources' count, else the default keyed partitioner's
    choice (murmur2, as every Kafka client's default)."""
    if partitions == sources:
        return source_partition
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def track_topic(producer: Any, topic: str) -> None:
    """Keep `topic` in the metadata `producer` (aiokafka's) asks for, before a batch is queued.

    aiokafka 0.14 asks the broker for the metadata of `client._topics` only (every topic while
    that set is empty) and replaces its whole view with the answer, and `send`/`send_batch` add
    a topic to the set only when its partitions are unknown. So once one topic is added (one
    created after the producer started: a changelog, the metrics agent's topic), a topic it
    knew from the first, full answer drops out of the view at the next refresh; a batch queued
    for it then waits for a leader that no refresh returns, while the sender asks for metadata
    again and again, and whoever awaits that batch's ack waits forever. Found by `bench e2e`
    (a worker that sent some messages, then processed and committed nothing; its dump showed
    the sender looping on `unknown_leaders_exist`); no upstream issue found. Tracking every
    topic before its first batch keeps it in each refresh; a batch queued while a refresh
    built before that was in flight is sent after the next one, which the sender asks for.
    """
    producer.client._topics.add(topic)


def app_producer(app: Any) -> Any:
    """The aiokafka producer under a faust app's (started) producer; the batches sent on it
    report their ack latency to the app's `observe_acks` observer."""
    producer = app.producer._ensure_producer()
    observer = _observer(_APP_ACK_OBSERVERS, app)
    if observer is not None:
        _ACK_OBSERVERS[producer] = observer
    return producer


def _observer(observers: weakref.WeakKeyDictionary[Any, AckObserver], key: Any) -> Any:
    """The observer registered for `key` (None, also for a key that cannot be one: a stand-in
    that takes no weak reference)."""
    try:
        return observers.get(key)
    except TypeError:
        return None


def observe_acks(app: Any, observer: AckObserver) -> None:
    """Tell `observer` the ack latency of every batch `PartitionBatches` sends on `app`'s producer
    (one per record batch: handed over → acknowledged, resends included; nothing for a failure).
    """
    _APP_ACK_OBSERVERS[app] = observer


class OpenBatches(Generic[T]):
    """aiokafka record batches being filled, per topic-partition, each with the tags of its records.

    `append` adds a record to the partition's newest batch (opening another when it is full);
    `take` detaches a partition's oldest batch for `send_batch`. A tag (e.g. the request a
    record belongs to) travels with its batch, so the caller can settle it when the batch is
    acknowledged. Headers (a W3C `traceparent` while tracing is on) go into the record as they
    are: None costs nothing.
    """

    def __init__(self, producer: Any) -> None:
        self._producer = producer  # an aiokafka.AIOKafkaProducer
        self._open: dict[TopicPartition, list[tuple[Any, list[T]]]] = {}

    def __bool__(self) -> bool:
        return bool(self._open)

    def __contains__(self, tp: object) -> bool:
        return tp in self._open

    def partitions(self) -> list[TopicPartition]:
        """The topic-partitions that have records waiting."""
        return list(self._open)

    def append(
        self,
        tp: TopicPartition,
        key: bytes | None,
        value: bytes | None,
        tag: T,
        headers: Headers = None,
    ) -> bool:
        """Add one record; False (nothing added) when it is larger than a whole batch."""
        batches = self._open.get(tp)
        if batches is None:
            batches = self._open[tp] = [(self._producer.create_batch(), [])]
        builder, tags = batches[-1]
        if builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            fresh = self._producer.create_batch()
            if fresh.append(key=key, value=value, timestamp=None, headers=headers) is None:
                return False
            builder, tags = fresh, []
            batches.append((builder, tags))  # the full one goes first
        tags.append(tag)
        return True

    def take(self, tp: TopicPartition) -> tuple[Any, list[T]]:
        """Detach the oldest batch of `tp` (which must have one) and its records' tags."""
        batches = self._open[tp]
        taken = batches.pop(0)
        if not batches:
            del self._open[tp]
        return taken

    def take_all(self) -> Iterator[tuple[TopicPartition, Any, list[T]]]:
        """Detach every batch, oldest first per partition."""
        for tp in self.partitions():
            while tp in self._open:
                builder, tags = self.take(tp)
                yield tp, builder, tags

    def clear(self) -> list[T]:
        """Drop every unsent batch; returns their tags."""
        dropped = [tag for batches in self._open.values() for _, tags in batches for tag in tags]
        self._open.clear()
        return dropped


class PartitionBatches:
    """An agent's output for one batch of events: records collected, then sent batch by batch.

    `add` takes an explicit partition (an agent writes a key to the partition its events came
    from: co-partitioned topics, and faust's rule for changelogs); `add_keyed` lets the default
    keyed partitioner choose (topics keyed otherwise, e.g. opt-outs by phone). `send()`
    submits everything through the (idempotent) producer and returns the delivery futures;
    `send_and_wait()` also awaits them: the events' offsets may be committed only after that.
    `on_ack` asks to be told the offsets the broker gave a topic's records (a table's changelog
    offsets, `pipeline.kafka.tables`); `ack_observer` (else the one `observe_acks` gave the
    producer's app) is told each record batch's ack latency, timed from one clock reading per
    `send()`. A batch that fails with a resendable error (the broker
    was away past the producer's timeout, or refused its producer id: `idempotence`) is sent
    again when it is still its partition's newest batch, so a broker restart costs a delay, not
    the worker; de-duplication by `id_sms_api` / `event_id` absorbs a batch the broker had
    written after all. When a newer batch of the partition was handed over meanwhile, a resend
    would land after it (an older table value over a newer one), so the failure stands: the
    agent crashes and its replay from the committed offsets restores the order.
    """

    def __init__(self, producer: Any, *, ack_observer: AckObserver | None = None) -> None:
        self._producer = producer  # an aiokafka.AIOKafkaProducer
        self._ack_observer = ack_observer or _observer(_ACK_OBSERVERS, producer)
        self._batches: OpenBatches[Record] = OpenBatches(producer)
        self._single: list[tuple[str, int, Record]] = []
        self._keyed: list[tuple[str, Record]] = []
        self._listeners: dict[str, AckListener] = {}

    @classmethod
    def for_app(cls, app: Any) -> PartitionBatches:
        """Batches on a (started) faust app's producer."""
        return cls(app_producer(app))

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers = None,
    ) -> None:
        """Queue one record (None value: a tombstone); nothing is sent before `send()`."""
        record = (key, value, headers)
        if not self._batches.append((topic, partition), key, value, record, headers):
            # larger than a whole batch: the producer's own path splits or refuses it
            self._single.append((topic, partition, record))

    def add_keyed(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Headers = None
    ) -> None:
        """Queue one record for the partition the default partitioner picks for `key`."""
        self._keyed.append((topic, (key, value, headers)))

    def on_ack(self, topic: str, listener: AckListener) -> None:
        """Call `listener(partition, last_offset)` for each record batch of `topic` sent from
        here, once the broker acknowledged it — whoever awaits the delivery futures, and not at
        all for a batch that failed. The first listener given for a topic is kept.
        """
        if topic not in self._listeners:
            self._listeners[topic] = listener

    async def send(self) -> list[asyncio.Future[Any]]:
        """Submit every queued record; returns delivery futures (await them for the acks)."""
        if self._keyed:
            keyed, self._keyed = self._keyed, []
            known: dict[str, list[int]] = {}
            for topic, (key, value, headers) in keyed:
                partitions = known.get(topic)
                if partitions is None:
                    partitions = known[topic] = sorted(await self._producer.partitions_for(topic))
                self.add(topic, partition_for(key, partitions), key, value, headers)
        futures: list[asyncio.Future[Any]] = []
        listeners = self._listeners
        observer = self._ack_observer
        handed_at = time.monotonic() if observer is not None else 0.0
        for (topic, partition), builder, records in self._batches.take_all():
            count = builder.record_count()
            if count:
                track_topic(self._producer, topic)
                number = _handed_over(self._producer, (topic, partition))
                future = await self._producer.send_batch(builder, topic, partition=partition)
                ack = _acked(listeners[topic], partition, count) if topic in listeners else None
                futures.append(
                    self._resent_on_failure(future, (topic, partition), records, number, ack)
                )
        single, self._single = self._single, []
        for topic, partition, record in single:
            track_topic(self._producer, topic)
            number = _handed_over(self._producer, (topic, partition))
            future = await _send_one(self._producer, topic, partition, record)
            ack = _acked(listeners[topic], partition, 1) if topic in listeners else None
            futures.append(
                self._resent_on_failure(future, (topic, partition), [record], number, ack)
            )
        if observer is not None:
            timer = _ack_timer(observer, handed_at)
            for delivery in futures:
                delivery.add_done_callback(timer)
        return futures

    def _resent_on_failure(
        self,
        first: asyncio.Future[Any],
        tp: TopicPartition,
        records: list[Record],
        number: int,
        ack: Callable[[asyncio.Future[Any]], None] | None,
    ) -> asyncio.Future[Any]:
        """A future of the records' delivery: `first`'s, or a resend's after a failure (only
        while this batch, the `number`-th handed over for its partition, is still its newest).
        `ack` is told the delivery that succeeded, the first or the resend."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if ack is not None:
            first.add_done_callback(ack)  # as soon as the broker answers (nothing for a failure)

        def settle(future: asyncio.Future[Any]) -> None:
            if done.done():
                return
            if future.cancelled():
                done.cancel()
            elif (error := future.exception()) is None:
                done.set_result(future.result())
            elif resendable(error) and _newest(self._producer, tp, number):
                task = asyncio.ensure_future(self._resend(tp, records, error, number))
                if ack is not None:
                    task.add_done_callback(ack)
                task.add_done_callback(settle_resend)
            else:
                done.set_exception(error)

        def settle_resend(task: asyncio.Future[Any]) -> None:
            if done.done():
                return
            if task.cancelled():
                done.cancel()
            elif (error := task.exception()) is not None:
                done.set_exception(error)
            else:
                done.set_result(task.result())

        first.add_done_callback(settle)
        return done

    async def _resend(
        self, tp: TopicPartition, records: list[Record], error: BaseException, number: int
    ) -> Any:
        """Send `records` again until acknowledged; give up (raise) after RESEND_ATTEMPTS, on an
        error a resend cannot cure, or once a newer batch of the partition was handed over."""
        topic, partition = tp
        for attempt in range(1, RESEND_ATTEMPTS + 1):
            await asyncio.sleep(min(0.1 * 2**attempt, 2.0))  # the producer asks for a new id
            if not _newest(self._producer, tp, number):
                raise error
            fresh: OpenBatches[None] = OpenBatches(self._producer)
            single = []
            for record in records:
                key, value, headers = record
                if not fresh.append(tp, key, value, None, headers):
                    single.append(record)
            sent: list[tuple[asyncio.Future[Any], int]] = []
            track_topic(self._producer, topic)
            for _, builder, _ in fresh.take_all():
                number = _handed_over(self._producer, tp)
                future = await self._producer.send_batch(builder, topic, partition=partition)
                sent.append((future, builder.record_count()))
            for record in single:
                number = _handed_over(self._producer, tp)
                future = await _send_one(self._producer, topic, partition, record)
                sent.append((future, 1))
            try:
                results = await asyncio.gather(*(future for future, _ in sent))
            except Exception as exc:
                if not resendable(exc):
                    raise
                error = exc
                continue
            # what `_acked` expects of a delivery of len(records) records: the last record's
            # offset minus len(records) - 1, however many batches the resend took
            last = results[-1].offset + sent[-1][1] - 1
            return results[-1]._replace(offset=last - len(records) + 1)
        raise error

    async def send_and_wait(self) -> None:
        """Submit every queued record and wait until the broker acknowledged all of them."""
        await asyncio.gather(*await self.send())


async def _send_one(producer: Any, topic: str, partition: int, record: Record) -> Any:
    """aiokafka's own `send` of one record (too large for a batch of ours): its future."""
    key, value, headers = record
    if headers is None:  # the signature the tests' stand-in producers have
        return await producer.send(topic, value, key=key, partition=partition)
    return await producer.send(topic, value, key=key, partition=partition, headers=list(headers))


def _handed_over(producer: Any, tp: TopicPartition) -> int:
    """Count a batch handed to `producer` for `tp`; its number (kept on the producer)."""
    counts: dict[TopicPartition, int] | None = getattr(producer, "_ardary_handed_over", None)
    if counts is None:
        counts = {}
        producer._ardary_handed_over = counts
    number = counts[tp] = counts.get(tp, 0) + 1
    return number


def _newest(producer: Any, tp: TopicPartition, number: int) -> bool:
    """Whether the `number`-th batch handed over for `tp` is still the last one."""
    counts: dict[TopicPartition, int] = getattr(producer, "_ardary_handed_over", {})
    return counts.get(tp) == number


def _ack_timer(observer: AckObserver, handed_at: float) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback telling `observer` how long a delivery took since `handed_at`."""

    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            observer(time.monotonic() - handed_at)

    return done


def _acked(
    listener: AckListener, partition: int, count: int
) -> Callable[[asyncio.Future[Any]], None]:
    """A done-callback telling `listener` the offset of a delivered batch's last record.

    aiokafka resolves a batch's future with the batch's base offset; its records follow it.
    """

    def done(future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is None:
            listener(partition, future.result().offset + count - 1)

    return done

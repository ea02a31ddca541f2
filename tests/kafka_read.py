"""Read a whole topic back, with no consumer group: what the integration tests compare.

`read_topic` takes everything up to the end offsets at the call, raw. `TopicReader` keeps
reading as records arrive and decodes them, for tests that wait for output to appear. Both
assign every partition of the topic and start from the beginning. Where a bootstrap string is
taken, a `KafkaClientConfig` reaches a secured cluster.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

from pipeline.kafka.config import KafkaClientConfig, client_config
from pipeline.serde import Codec, make_codec
from tests.polling import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

__all__ = ["TopicReader", "read_topic"]


def _from_the_beginning(
    bootstrap: str | KafkaClientConfig, topic: str, timeout: float
) -> tuple[Any, list[Any]]:
    """A group-less consumer assigned every partition of `topic`, at the beginning."""
    consumer = KafkaConsumer(
        **client_config(bootstrap).kafka_python(), group_id=None, enable_auto_commit=False
    )
    try:
        parts = wait_until(lambda: consumer.partitions_for_topic(topic), timeout, f"topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
    except BaseException:
        consumer.close()
        raise
    return consumer, tps


def read_topic(bootstrap: str | KafkaClientConfig, topic: str, timeout: float = 30.0) -> list[Any]:
    """Every record of every partition of `topic` up to its end offsets at the call.

    kafka-python `ConsumerRecord`s (partition, offset, key, value, ...), in order per partition.
    Fails when the end is not reached within `timeout` seconds.
    """
    consumer, tps = _from_the_beginning(bootstrap, topic, timeout)
    try:
        ends = consumer.end_offsets(tps)
        out: list[Any] = []

        def at_the_end() -> bool:
            if all(consumer.position(tp) >= ends[tp] for tp in tps):
                return True
            for messages in consumer.poll(timeout_ms=500).values():
                out.extend(messages)
            return False

        wait_until(at_the_end, timeout, f"{topic} read back to its end", interval=0)
        return out
    finally:
        consumer.close()


class TopicReader:
    """Reads a whole topic as records arrive and keeps what it decoded (`records`)."""

    def __init__(
        self,
        bootstrap: str | KafkaClientConfig,
        topic: str,
        codec: Codec | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.topic = topic
        self.codec = codec or make_codec(None)
        self.consumer, _ = _from_the_beginning(bootstrap, topic, timeout)
        self.records: list[Any] = []

    def poll(self) -> list[Any]:
        """Fetch what arrived (waiting up to 200 ms), decode it; every record so far."""
        for batch in self.consumer.poll(timeout_ms=200).values():
            self.records.extend(self.codec.decode(m.value) for m in batch)
        return self.records

    def by_id(self) -> dict[str, list[Any]]:
        """The records so far, grouped by `id_sms_api`."""
        out: dict[str, list[Any]] = {}
        for r in self.records:
            out.setdefault(r.id_sms_api, []).append(r)
        return out

    def wait_ids(self, ids: Iterable[str], timeout: float) -> dict[str, list[Any]]:
        """Read until every id of `ids` has a record; `by_id()` then."""
        wanted = set(ids)

        def done() -> bool:
            self.poll()
            return wanted <= set(self.by_id())

        wait_until(done, timeout, f"records for {len(wanted)} ids of {self.topic}", interval=0)
        return self.by_id()

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

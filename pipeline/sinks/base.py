"""The sink contract: setup / add / flush per topic-partition, offsets written with the rows.

A sink buffers records per topic-partition; `flush` writes the rows of the flushed partitions
AND their next offsets in one warehouse transaction, so after a crash the consumer seeks to the
stored offsets and replays exactly what was not committed: nothing is lost, nothing doubled
(keyed tables make a replay of a committed row harmless too). A partition whose buffer is full
raises `SinkBackpressure`: the consumer flushes (or pauses) and retries the record.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pipeline import records
from pipeline.errors import SinkBackpressure
from pipeline.serde import SchemaStore
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.schema_ddl import TableSpec, table_specs

__all__ = ["Batch", "BatchingSink", "Sink", "TopicPartition"]

DEFAULT_MAX_BATCH = 50_000


class TopicPartition(NamedTuple):
    """A topic and partition (hashable, sortable; equal to kafka-python's by value)."""

    topic: str
    partition: int


@dataclass(slots=True)
class Batch:
    """Records of one topic-partition not yet flushed, with their offset range."""

    first_offset: int
    last_offset: int
    records: list[records.Record] = field(default_factory=list)


class Sink(ABC):
    """What the runner needs from a warehouse."""

    @abstractmethod
    def setup(self) -> None:
        """Create and migrate tables, offsets and views; idempotent."""

    @abstractmethod
    def add(self, topic: str, partition: int, offset: int, record: records.Record) -> None:
        """Buffer one record; raises SinkBackpressure when that partition's batch is full."""

    @abstractmethod
    def flush(self, topic_partitions: Iterable[TopicPartition] | None = None) -> int:
        """Write the buffered rows and their offsets in one transaction; returns rows written."""

    @abstractmethod
    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The next offset to read per partition, as stored with the rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the warehouse (does not flush: call flush first)."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Records buffered and not yet flushed."""


class BatchingSink(Sink):
    """Buffers per topic-partition; subclasses implement `_write` as one transaction."""

    def __init__(
        self,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.group = group
        self.store = store or SchemaStore.load()
        self.pii = pii or PiiPolicy()
        self.max_batch = max_batch
        self.tables: tuple[TableSpec, ...] = table_specs(self.store)
        self._by_record: dict[str, TableSpec] = {t.record: t for t in self.tables}
        self._batches: dict[TopicPartition, Batch] = {}
        self._pending = 0

    @property
    def pending(self) -> int:
        return self._pending

    def table_for(self, record: records.Record) -> TableSpec | None:
        """The table a record goes to; None for records the warehouse does not keep."""
        return self._by_record.get(type(record).__name__)

    def add(self, topic: str, partition: int, offset: int, record: records.Record) -> None:
        tp = TopicPartition(topic, partition)
        batch = self._batches.get(tp)
        if batch is None:
            batch = self._batches[tp] = Batch(offset, offset)
        elif len(batch.records) >= self.max_batch:
            raise SinkBackpressure(f"batch of {topic}[{partition}] is full ({self.max_batch})")
        batch.records.append(record)
        batch.last_offset = offset
        self._pending += 1

    def flush(self, topic_partitions: Iterable[TopicPartition] | None = None) -> int:
        wanted = list(self._batches) if topic_partitions is None else list(topic_partitions)
        batches = {tp: self._batches[tp] for tp in wanted if tp in self._batches}
        if not batches:
            return 0
        written = self._write(batches)
        for tp, batch in batches.items():
            del self._batches[tp]
            self._pending -= len(batch.records)
        return written

    def take(
        self, topic_partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Batch]:
        """Detach the buffered batches (for a writer thread): `add` may go on meanwhile."""
        wanted = list(self._batches) if topic_partitions is None else list(topic_partitions)
        taken = {tp: self._batches.pop(tp) for tp in wanted if tp in self._batches}
        self._pending -= sum(len(b.records) for b in taken.values())
        return taken

    def write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        """Write detached batches and their offsets in one transaction; returns rows written."""
        return self._write(batches) if batches else 0

    def drop(self, topic_partitions: Iterable[TopicPartition]) -> None:
        """Forget buffered records of partitions this consumer no longer owns."""
        for tp in topic_partitions:
            batch = self._batches.pop(TopicPartition(*tp), None)
            if batch is not None:
                self._pending -= len(batch.records)

    def group_by_table(
        self, batches: Mapping[TopicPartition, Batch]
    ) -> dict[TableSpec, list[records.Record]]:
        """All flushed records per table, in offset order within each partition.

        A partition's records are nearly always of one class (one topic, one record type), so
        this works on runs of one class rather than record by record.
        """
        by_name: dict[str, tuple[TableSpec, list[records.Record]]] = {}
        for batch in batches.values():
            for cls, run in itertools.groupby(batch.records, type):
                spec = self._by_record.get(cls.__name__)
                if spec is None:
                    continue
                entry = by_name.get(spec.name)
                if entry is None:
                    entry = by_name[spec.name] = (spec, [])
                entry[1].extend(run)
        return dict(by_name.values())

    @abstractmethod
    def _write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        """Write rows and `last_offset + 1` of every batch atomically; return rows written."""

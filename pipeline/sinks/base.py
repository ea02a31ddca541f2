"""The sink contract: what the runner calls, and the per-partition batching every sink shares.

The runner (`pipeline.sinks.runner`) drives a sink like this:

    setup()                              create/migrate tables, offsets and views
    committed_offsets(group)             on each assignment: where to resume, per partition
    add(topic, partition, offset, rec)   per record polled (SinkBackpressure: write, then retry)
    take() -> batches                    detach what is buffered (on the polling thread) ...
    write(batches) -> rows               ... and write it on the writer thread, rows AND offsets
    close()                              at the end (does not write what is still buffered)
    rows_written() -> {table: rows}      any time, any thread: what the writes stored so far

`write` stores the rows of the batches AND each partition's next offset in one warehouse
transaction, so after a crash the consumer seeks to the stored offsets and replays exactly what
was not written: nothing is lost, nothing doubled (keyed tables make a replay of a committed row
harmless too). `take` and `write` are separate so that `add` can go on while a write runs.
`flush()` is both in one call, for scripts and tests; the runner never calls it.
"""

from __future__ import annotations

import itertools
import threading
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
    """Records of one topic-partition not yet written, with their offset range."""

    first_offset: int
    last_offset: int
    records: list[records.Record] = field(default_factory=list)


class Sink(ABC):
    """What the runner needs from a warehouse (the calls of the module docstring)."""

    @abstractmethod
    def setup(self) -> None:
        """Create and migrate tables, offsets and views; idempotent."""

    @abstractmethod
    def add(self, topic: str, partition: int, offset: int, record: records.Record) -> None:
        """Buffer one record; raises SinkBackpressure when that partition's batch is full."""

    @abstractmethod
    def take(
        self, topic_partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Batch]:
        """Detach the buffered batches (all, or those partitions'): `add` may go on meanwhile."""

    @abstractmethod
    def write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        """Write batches and their next offsets in one transaction; returns rows written.

        Called on the runner's writer thread, one write at a time; a failure raises SinkError
        and nothing of the batches is stored (the runner stops, the restart replays them).
        """

    @abstractmethod
    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """The next offset to read per partition, as stored with the rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the warehouse (does not write what is buffered)."""

    @property
    @abstractmethod
    def pending(self) -> int:
        """Records buffered and not yet taken."""

    def rows_written(self) -> dict[str, int]:
        """Rows written so far per table, for monitoring (any thread); {} if not counted."""
        return {}

    def flush(self, topic_partitions: Iterable[TopicPartition] | None = None) -> int:
        """`take` then `write` in the caller's thread (scripts, tests); returns rows written.

        A failed write raises and the taken records are gone from the buffer, as in the runner:
        their offsets were not stored, so the next consumer replays them.
        """
        return self.write(self.take(topic_partitions))


class BatchingSink(Sink):
    """Buffers per topic-partition; a subclass writes a batch set as one transaction (`_write`).

    Subclasses: `SqlSink` (DuckDB, PostgreSQL) and `ParquetSink`. Every one is built as
    `cls(target, group, store=, pii=, max_batch=)`, which `pipeline.sinks.factory` relies on.
    """

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
        self._rows_lock = threading.Lock()  # written by the writer thread, read by a scrape
        self._rows_written: dict[str, int] = {}

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

    def take(
        self, topic_partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Batch]:
        wanted = list(self._batches) if topic_partitions is None else list(topic_partitions)
        taken = {tp: self._batches.pop(tp) for tp in wanted if tp in self._batches}
        self._pending -= sum(len(b.records) for b in taken.values())
        return taken

    def write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        if not batches:
            return 0
        by_table = self._write(batches)
        with self._rows_lock:
            for table, rows in by_table.items():
                self._rows_written[table] = self._rows_written.get(table, 0) + rows
        return sum(by_table.values())

    def rows_written(self) -> dict[str, int]:
        with self._rows_lock:
            return dict(self._rows_written)

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
    def _write(self, batches: Mapping[TopicPartition, Batch]) -> dict[str, int]:
        """Write rows and `last_offset + 1` of every batch atomically; rows written per table."""

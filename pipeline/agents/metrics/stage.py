"""What both metrics stages share: batch sizes, the expiry pace, and where a batch's output goes."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from pipeline.core.metrics import MetricFact
from pipeline.kafka.produce import PartitionBatches
from pipeline.kafka.tables import table_write

__all__ = [
    "BATCH_MAX",
    "BATCH_WITHIN_S",
    "EXPIRY_INTERVAL_S",
    "BatchOutput",
    "StageOutput",
    "stored_facts",
]

BATCH_MAX = 1000
BATCH_WITHIN_S = 0.05
EXPIRY_INTERVAL_S = 30.0

E_contra = TypeVar("E_contra", contravariant=True)


class StageOutput(Protocol[E_contra]):
    """Where a stage puts what one batch of events caused (a fake in tests)."""

    def write(self, event: E_contra, key: bytes, value: Any) -> None:
        """Set (None: delete) a key of the stage's table, in `event`'s partition."""

    def emit(self, key: bytes, value: bytes) -> None:
        """Produce a record to the stage's output topic (the keyed partitioner picks)."""


class BatchOutput:
    """A stage's output for one batch, on one `PartitionBatches`: the table's local store now and
    its changelog records in the batch (`table_write`), output records keyed (`add_keyed`).
    The caller awaits `batches.send_and_wait()` before the batch's events may be acked."""

    __slots__ = ("batches", "table", "topic")

    def __init__(self, table: Any, topic: str, batches: PartitionBatches) -> None:
        self.table = table
        self.topic = topic
        self.batches = batches

    def write(self, event: Any, key: bytes, value: Any) -> None:
        table_write(self.table, event, key, value, self.batches)

    def emit(self, key: bytes, value: bytes) -> None:
        self.batches.add_keyed(self.topic, key, value)


def stored_facts(value: Any) -> tuple[MetricFact, ...]:
    """The facts of a table value ``{"p": partition, "f": [fact dicts], ...}`` (None: none)."""
    return () if value is None else tuple(MetricFact.from_dict(d) for d in value["f"])

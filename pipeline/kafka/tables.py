"""Faust table helpers shared by the stateful agents (correlate, metrics, outbound).

Writes go to the local store and, straight to the Kafka producer, to the changelog; once the
broker acknowledged a batch's changelog records, the local store remembers their offset, so a
restarted worker reads only the changelog written since; expiry timers sweep a table with
tombstones; and an event is made faust's "current event" so a table key lands in that event's
partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from faust.types import TP

from pipeline.kafka.produce import PartitionBatches

__all__ = [
    "ROCKSDB_OPTIONS",
    "ChangelogOffsets",
    "as_current",
    "bind_event",
    "changelog_offsets",
    "sweep",
    "table_write",
    "ttl_scan_interval",
]

# faust's RocksDB defaults (2 GiB block cache and 3 x 64 MiB memtables per partition DB) put a
# correlate worker at 520 MB RSS with 1M lifecycles (measured); these bound it per partition DB.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 << 20,
    "max_write_buffer_number": 2,
    "block_cache_size": 16 << 20,
    "block_cache_compressed_size": 4 << 20,
}


def ttl_scan_interval(ttl_seconds: float) -> float:
    """How often the TTL timer scans: an eighth of the TTL, between 5 s and 10 min."""
    return max(5.0, min(ttl_seconds / 8.0, 600.0))


@contextlib.contextmanager
def as_current(event: Any) -> Iterator[None]:
    """`bind_event` for the duration of a block, then restore the previous current event."""
    from faust.streams import _current_event

    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def bind_event(event: Any) -> None:
    """Make `event` faust's current event, so table reads and writes use its partition.

    faust picks a table key's store and changelog partition from the current event; in a batch
    (`event_batches`) that is the batch's last event, which may be another
    partition's.
    """
    from faust.streams import _current_event

    _current_event.set(weakref.ref(event))


def table_write(
    table: Any,
    event: Any,
    key: bytes,
    value: Any,
    batches: PartitionBatches,
    *,
    tail_recovery: bool = False,
) -> None:
    """Set (or, with None, delete) a table key in `event`'s partition: the local store now, the
    changelog record in `batches`.

    Same effect as ``table[key] = value``, but the changelog record goes out with the batch's
    other records instead of through faust's 100-message buffer, which publishes one record at
    a time and capped an agent at ~1,400 events/s (measured). The bytes are those faust itself
    writes, so faust's recovery reads them unchanged.

    With `tail_recovery`, once the broker acknowledged the batch, the offset of its last
    changelog record is kept in the local store (`ChangelogOffsets`), as faust does for its own
    changelog sends, so a restart on the same data dir reads only the changelog's tail. Only for
    a table whose agent writes and produces a replayed event's state even when it changed
    nothing (see `ChangelogOffsets`): the correlate agent's. The others re-read their whole
    changelog on a restart, which resets a key the killed process wrote but never got
    acknowledged to its last acknowledged value, so their unchanged-skipping stays correct.

    A `bytes` value is written to the changelog as it is (a table whose values are raw bytes,
    as faust's "raw" serializer would); any other value as faust's JSON.

    The caller awaits the delivery futures of `batches.send()` before the events' offsets may
    be committed.
    """
    topic, partition, raw = _store(table, event, key, value)
    batches.add(topic, partition, key, raw)
    if tail_recovery:
        batches.on_ack(topic, changelog_offsets(table))


def _store(table: Any, event: Any, key: bytes, value: Any) -> tuple[str, int, bytes | None]:
    """Apply the write to the local store; return the changelog record's topic, partition, bytes."""
    bind_event(event)
    if value is None:
        if key in table.data:
            del table.data[key]
    else:
        table.data[key] = value
    # bytes go as they are (a table of raw values, e.g. the outbound send states); others as JSON
    raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
    return table.changelog_topic.get_topic_name(), event.message.partition, raw


class ChangelogOffsets:
    """Keeps, in a table's local store, the changelog offset its store is complete up to.

    faust starts a changelog partition's recovery at the offset its store keeps
    (`Store.persisted_offset`; RocksDB keeps it in the partition's own database, next to the
    data) and moves it itself only for the records it sends (`Table._on_changelog_sent`). The
    agents' records go out in `PartitionBatches` instead, so this is told their offsets when the
    broker acknowledged them. Sound because `table_write` changes the store *before* the record
    is sent: every changelog record up to an acknowledged offset is already in the store, and a
    RocksDB write survives a killed process (its write-ahead log) in the order it was made.
    Recovery then re-reads only what was written after; re-applying a record is harmless.
    The other way round, the store can be *ahead* after a kill (written, never acknowledged),
    and recovery no longer overwrites such a key with its older changelog value: an agent must
    write and produce a replayed event's state even when the event changes nothing in the store
    (the correlate agent does; its chaos-run mismatch was exactly this).
    """

    def __init__(self, table: Any) -> None:
        self._table = weakref.ref(table)
        self._topic: str = table.changelog_topic.get_topic_name()

    def __call__(self, partition: int, offset: int) -> None:
        table = self._table()
        if table is None:
            return
        store = table.data
        # faust closes a revoked partition's database (RocksDB's `_dbs` loses it); reopening it
        # here would take a partition this worker no longer serves: the next owner restores it.
        open_dbs = getattr(store, "_dbs", None)
        if open_dbs is not None and partition not in open_dbs:
            return
        store.set_persisted_offset(TP(self._topic, partition), offset)


# By the table's id, not the table: a faust Table is a Mapping, and a WeakKeyDictionary lookup
# compares keys with Mapping.__eq__, which reads both tables whole (measured: a correlate worker
# fell from ~10,000 to 66 events/s). The weak reference's callback drops a dead table's entry
# before its id can be reused.
_OFFSETS: dict[int, ChangelogOffsets] = {}
_REFS: dict[int, weakref.ref[Any]] = {}


def changelog_offsets(table: Any) -> ChangelogOffsets:
    """The one `ChangelogOffsets` of `table`."""
    key = id(table)
    keeper = _OFFSETS.get(key)
    if keeper is None:
        keeper = _OFFSETS[key] = ChangelogOffsets(table)
        _REFS[key] = weakref.ref(table, lambda _: _forget(key))
    return keeper


def _forget(key: int) -> None:
    _OFFSETS.pop(key, None)
    _REFS.pop(key, None)


def _partition_in_value(key: bytes, value: Any) -> int:
    return int(value["p"])


async def sweep(
    table: Any,
    victim: Callable[[bytes, Any], bool],
    partition_of: Callable[[bytes, Any], int] = _partition_in_value,
) -> list[bytes]:
    """Delete every key of `table` that `victim(key, value)` picks: tombstone and local store.

    Timers call this (no current event, so the changelog record is sent directly to the
    partition `partition_of(key, value)` names: by default the value's "p"). It yields to the
    loop every 5,000 keys so a big table does not stall the agents, and deletes only after the
    scan: a store being iterated is never mutated.
    """
    victims: list[tuple[bytes, int]] = []
    for n, (key, value) in enumerate(table.data.items()):
        if n % 5000 == 4999:
            await asyncio.sleep(0)
        if victim(key, value):
            victims.append((key, partition_of(key, value)))
    for key, partition in victims:
        table.send_changelog(partition, key, None, value_serializer="raw")
        table.data.pop(key, None)
    return [key for key, _ in victims]

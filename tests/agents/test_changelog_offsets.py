"""A table's changelog offsets reach its RocksDB store once the broker acknowledged them.

faust starts a changelog partition's recovery at the offset the store keeps
(`Table.persisted_offset`, read by `Recovery._add`); without it a restarted worker re-reads the
whole changelog. These tests use a real faust table on a real RocksDB store (no broker: the
producer is a stand-in that hands back aiokafka's own record batches and delivery futures).
"""

from __future__ import annotations

import asyncio
import types
from pathlib import Path
from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata, TopicPartition
from faust.types import TP

from pipeline.agents.app import create_app
from pipeline.kafka.produce import PartitionBatches
from pipeline.kafka.tables import changelog_offsets, table_write
from pipeline.settings import load_settings


class Producer:
    """aiokafka's `create_batch`/`send_batch`/`send`; the test settles the futures itself."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int, int, asyncio.Future[Any]]] = []
        self.client = types.SimpleNamespace(_topics=set())  # the topics tracked (track_topic)

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(16384, 0)  # no compression

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch.record_count(), future))
        return future

    async def send(self, topic: str, value: Any, *, key: Any, partition: int) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, 1, future))
        return future

    def acknowledge(self, base_offsets: dict[tuple[str, int], int]) -> None:
        for topic, partition, _, future in self.sent:
            offset = base_offsets[(topic, partition)]
            future.set_result(
                RecordMetadata(topic, partition, TopicPartition(topic, partition), offset, -1, 0, 0)
            )


class Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition


class Event:
    """What table_write reads of a faust event: its message's partition (and a weakref)."""

    def __init__(self, partition: int) -> None:
        self.message = Message(partition)


@pytest.fixture
def table(tmp_path: Path) -> Any:
    app, _ = create_app(
        load_settings(kafka_bootstrap_servers="127.0.0.1:1", pipeline_partitions=3),
        agents=["correlate"],
        store="rocksdb://",
        data_dir=tmp_path / "state",
    )
    table = app.tables["lifecycle"]
    for partition in (0, 2):  # what faust does for the partitions it assigns
        table.data._db_for_partition(partition)
    return table


async def _write(table: Any, writes: list[tuple[int, bytes]]) -> tuple[Producer, str]:
    producer = Producer()
    batches = PartitionBatches(producer)
    for partition, key in writes:
        table_write(
            table, Event(partition), key, {"p": partition, "s": {}}, batches, tail_recovery=True
        )
    await batches.send()
    return producer, table.changelog_topic.get_topic_name()


async def test_an_acknowledged_batch_moves_the_offset_recovery_starts_from(table: Any) -> None:
    producer, changelog = await _write(table, [(0, b"a"), (0, b"b"), (2, b"c"), (0, b"d")])
    assert [(t, p, n) for t, p, n, _ in producer.sent] == [(changelog, 0, 3), (changelog, 2, 1)]
    assert table.persisted_offset(TP(changelog, 0)) is None  # nothing acknowledged yet

    producer.acknowledge({(changelog, 0): 40, (changelog, 2): 7})
    await asyncio.sleep(0)  # done-callbacks run on the next loop iteration

    assert table.persisted_offset(TP(changelog, 0)) == 42  # the batch's last record: 40 + 3 - 1
    assert table.persisted_offset(TP(changelog, 2)) == 7
    assert table.data[b"c"] == {"p": 2, "s": {}}  # the store holds what the changelog says


async def test_a_failed_batch_leaves_the_offset_alone(table: Any) -> None:
    producer, changelog = await _write(table, [(0, b"a")])
    producer.sent[0][3].set_exception(RuntimeError("broker said no"))
    await asyncio.sleep(0)
    assert table.persisted_offset(TP(changelog, 0)) is None


async def test_a_partition_revoked_before_the_ack_is_not_reopened(table: Any) -> None:
    producer, changelog = await _write(table, [(2, b"a")])
    table.data._dbs.pop(2)  # what faust's revoke_partitions does
    producer.acknowledge({(changelog, 2): 5})
    await asyncio.sleep(0)
    assert 2 not in table.data._dbs


def test_finding_a_tables_offsets_never_compares_tables(
    table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A faust Table is a Mapping: comparing two reads both whole, once per table write."""

    def no_comparison(self: Any, other: Any) -> bool:
        raise AssertionError("a table was compared with ==")

    keeper = changelog_offsets(table)
    monkeypatch.setattr(type(table), "__eq__", no_comparison)
    assert changelog_offsets(table) is keeper


async def test_without_tail_recovery_a_table_keeps_reading_its_whole_changelog(
    table: Any,
) -> None:
    # the tables whose agents skip unchanged states: a full replay resets what a killed
    # process wrote but never got acknowledged
    producer = Producer()
    batches = PartitionBatches(producer)
    table_write(table, Event(0), b"a", {"p": 0, "s": {}}, batches)
    await batches.send()
    changelog = table.changelog_topic.get_topic_name()
    producer.acknowledge({(changelog, 0): 40})
    assert table.persisted_offset(TP(changelog, 0)) is None

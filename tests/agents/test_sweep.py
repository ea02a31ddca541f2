"""`sweep`, the table expiry shared by the correlate TTL and the metrics expiry timers."""

from __future__ import annotations

from typing import Any

from pipeline.kafka.tables import sweep


class FakeTable:
    """The two things sweep uses of a faust Table: its local store and changelog sends."""

    def __init__(self, data: dict[bytes, Any]) -> None:
        self.data = data
        self.tombstones: list[tuple[int, bytes, Any]] = []

    def send_changelog(self, partition: int, key: bytes, value: Any, **kwargs: Any) -> None:
        assert kwargs == {"value_serializer": "raw"}
        self.tombstones.append((partition, key, value))


async def test_sweep_deletes_exactly_the_victims_with_a_tombstone_in_their_partition() -> None:
    data = {f"k{i}".encode(): {"p": i % 3, "old": i % 2 == 0} for i in range(12_001)}
    table = FakeTable(dict(data))
    gone = await sweep(table, lambda key, value: value["old"])
    expected = [k for k, v in data.items() if v["old"]]
    assert gone == expected
    assert set(table.data) == set(data) - set(expected)
    assert table.tombstones == [(data[k]["p"], k, None) for k in expected]


async def test_sweep_with_no_victim_changes_nothing() -> None:
    table = FakeTable({b"a": {"p": 0}})
    assert await sweep(table, lambda key, value: False) == []
    assert table.data == {b"a": {"p": 0}} and table.tombstones == []


async def test_sweep_sends_each_tombstone_to_the_partition_it_is_told() -> None:
    table = FakeTable({b"a": b"raw-a", b"b": b"raw-b", b"c": b"raw-c"})
    where = {b"a": 5, b"c": 0}
    gone = await sweep(
        table, lambda key, value: key in where, partition_of=lambda key, value: where[key]
    )
    assert gone == [b"a", b"c"]
    assert table.data == {b"b": b"raw-b"}
    assert table.tombstones == [(5, b"a", None), (0, b"c", None)]

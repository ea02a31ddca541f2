"""The sink's shutdown when the cluster went away: rows still held are written, one error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kafka.errors import KafkaConnectionError, KafkaError
from kafka.structs import TopicPartition

from pipeline.errors import BrokerError
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.sinks.duckdb_sink import DuckDBSink
from pipeline.sinks.runner import _Loop, close_loop
from tests.unit.sinks.helpers import lifecycle, query

TP = TopicPartition("p.sms.lifecycle", 0)


class _ClosingConsumer:
    """kafka-python's `close()` as it behaves with the brokers gone: it calls the listener's
    `on_partitions_revoked` (an error there becomes a KafkaError), then fails to leave."""

    def __init__(self, leave_error: Exception | None) -> None:
        self.listener: Any = None
        self.leave_error = leave_error

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def close(self, autocommit: bool = True) -> None:
        try:
            self.listener.on_partitions_revoked([TP])
        except Exception as exc:
            raise KafkaError("User rebalance callback throws an error") from exc
        if self.leave_error is not None:
            raise self.leave_error


def _loop(tmp_path: Path, consumer: _ClosingConsumer) -> tuple[_Loop, DuckDBSink]:
    sink = DuckDBSink(tmp_path / "wh.duckdb", "g1")
    sink.setup()
    loop = _Loop(consumer, sink, AvroCodec(SchemaStore.load()), "g1", from_beginning=False)
    consumer.listener = loop
    sink.add(TP.topic, TP.partition, 7, lifecycle(1))  # polled, not yet written
    return loop, sink


def test_close_after_a_failed_loop_writes_the_held_rows_and_keeps_the_loops_error(
    tmp_path: Path,
) -> None:
    consumer = _ClosingConsumer(KafkaConnectionError("111 ECONNREFUSED"))
    loop, sink = _loop(tmp_path, consumer)
    try:
        close_loop(loop, consumer, failing=True)  # logs the failed leave, raises nothing
        assert query(sink, "SELECT id_sms_api FROM sms_lifecycle") == [("m1",)]
        assert sink.committed_offsets("g1") == {TP: 8}
    finally:
        sink.close()


def test_a_failed_close_after_a_clean_stop_is_one_broker_error(tmp_path: Path) -> None:
    consumer = _ClosingConsumer(KafkaConnectionError("111 ECONNREFUSED"))
    loop, sink = _loop(tmp_path, consumer)
    try:
        with pytest.raises(BrokerError, match="closing the sink consumer failed"):
            close_loop(loop, consumer, failing=False)
        assert query(sink, "SELECT count(*) FROM sms_lifecycle") == [(1,)]
    finally:
        sink.close()

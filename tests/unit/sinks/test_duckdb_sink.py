"""DuckDB sink: upsert or ignore, offsets in the same transaction, backpressure, evolution."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from pipeline import records
from pipeline.errors import SinkBackpressure, SinkError
from pipeline.serde import SchemaStore, default_schema_dir
from pipeline.sinks.base import TopicPartition
from pipeline.sinks.duckdb_sink import DuckDBSink
from tests.unit.sinks.helpers import T0, lifecycle, query


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[DuckDBSink]:
    s = DuckDBSink(tmp_path / "wh.duckdb", "g1")
    s.setup()
    yield s
    s.close()


def status(eid: str, n: int = 0) -> records.StatusCallback:
    return records.StatusCallback(eid, "+33612345678", f"s{n}", T0, raw="{}")


def test_upsert_keeps_the_latest_and_ignore_keeps_the_first(sink: DuckDBSink) -> None:
    sink.add("p.sms.lifecycle", 0, 10, lifecycle(1, state="SUBMITTED"))
    sink.add("p.sms.lifecycle", 0, 11, lifecycle(1, state="SENT"))
    sink.add("p.callbacks.status", 2, 5, status("e1", 1))
    sink.add("p.callbacks.status", 2, 6, status("e1", 2))
    assert sink.pending == 4
    sink.flush()
    sink.add("p.sms.lifecycle", 0, 12, lifecycle(1, state="DELIVERED"))
    sink.add("p.callbacks.status", 2, 7, status("e1", 3))
    sink.flush()
    assert sink.pending == 0
    assert query(sink, "SELECT id_sms_api, state FROM sms_lifecycle") == [("m1", "DELIVERED")]
    assert query(sink, "SELECT event_id, status FROM callbacks_status") == [("e1", "s1")]
    assert sink.committed_offsets("g1") == {
        TopicPartition("p.sms.lifecycle", 0): 13,
        TopicPartition("p.callbacks.status", 2): 8,
    }
    assert sink.committed_offsets("other") == {}


def test_flush_of_some_partitions_keeps_the_others_pending(sink: DuckDBSink) -> None:
    sink.add("t", 0, 0, lifecycle(1))
    sink.add("t", 1, 0, lifecycle(2))
    sink.flush([TopicPartition("t", 0)])
    assert sink.pending == 1
    assert sink.committed_offsets("g1") == {TopicPartition("t", 0): 1}


def test_failed_write_rolls_back_rows_and_offsets(sink: DuckDBSink, monkeypatch) -> None:
    sink.add("t", 0, 0, lifecycle(1))
    batches = sink.take()

    def boom(conn, batches) -> None:
        raise duckdb.IOException("disk gone")

    monkeypatch.setattr(sink, "_write_offsets", boom)
    with pytest.raises(SinkError, match="disk gone"):
        sink.write(batches)
    assert query(sink, "SELECT COUNT(*) FROM sms_lifecycle") == [(0,)]
    assert sink.committed_offsets("g1") == {}
    monkeypatch.undo()
    # the replay (from the unchanged offsets) writes it: the connection survived the rollback
    assert sink.write(batches) == 1
    assert sink.committed_offsets("g1") == {TopicPartition("t", 0): 1}


def test_sink_used_before_setup_says_so(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="before setup"):
        DuckDBSink(tmp_path / "x.duckdb", "g").committed_offsets("g")


def test_full_batch_raises_backpressure(tmp_path: Path) -> None:
    s = DuckDBSink(tmp_path / "b.duckdb", "g", max_batch=3)
    s.setup()
    for offset in range(3):
        s.add("t", 0, offset, lifecycle(offset))
    with pytest.raises(SinkBackpressure) as info:
        s.add("t", 0, 3, lifecycle(3))
    assert info.value.retriable
    s.add("t", 1, 0, lifecycle(9))  # another partition is not blocked
    s.flush()
    s.add("t", 0, 3, lifecycle(3))
    s.close()


def test_types_round_trip(sink: DuckDBSink) -> None:
    rec = lifecycle(7, error_codes=("#003", "#004"), metadata={"campaign": "spring"}, click_count=2)
    sink.add("t", 0, 0, rec)
    sink.add("d", 0, 0, records.DeadLetter("d1", "bad", "x", "GET", b"\x00\xff", T0))
    sink.flush()
    row = query(
        sink,
        "SELECT error_codes, metadata->>'campaign', click_count, requested_at FROM sms_lifecycle",
    )
    assert row == [(["#003", "#004"], "spring", 2, rec.requested_at)]
    assert query(sink, "SELECT raw FROM dead_letters") == [(b"\x00\xff",)]


def test_new_defaulted_field_becomes_a_nullable_column(tmp_path: Path) -> None:
    path = tmp_path / "evo.duckdb"
    old = DuckDBSink(path, "g")
    old.setup()
    old.add("t", 0, 0, lifecycle(1))
    old.flush()
    old.close()

    schemas = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), schemas)
    avsc = schemas / "SmsLifecycle.avsc"
    doc = json.loads(avsc.read_text())
    doc["fields"].append({"name": "campaign_id", "type": ["null", "string"], "default": None})
    avsc.write_text(json.dumps(doc))

    new = DuckDBSink(path, "g", store=SchemaStore.load(schemas))
    new.setup()
    new.add("t", 0, 1, lifecycle(2))
    new.flush()
    cols = query(
        new,
        "SELECT column_name, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'sms_lifecycle' AND column_name = 'campaign_id'",
    )
    assert cols == [("campaign_id", "YES")]
    rows = query(new, "SELECT id_sms_api, campaign_id FROM sms_lifecycle ORDER BY 1")
    assert rows == [("m1", None), ("m2", None)]
    new.close()

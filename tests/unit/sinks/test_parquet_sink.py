"""Parquet sink: files appear only by rename, and a crash before the offsets replays cleanly."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.errors import SinkError
from pipeline.sinks.base import TopicPartition
from pipeline.sinks.parquet_sink import ParquetSink, parse_part_name, part_name
from tests.unit.sinks.helpers import T0, lifecycle


def read_ids(root: Path) -> list[str]:
    ids: list[str] = []
    for file in sorted(root.glob("sms_lifecycle/date=*/*.parquet")):
        ids += pq.read_table(file).column("id_sms_api").to_pylist()
    return ids


def test_part_names_round_trip_with_dotted_topics() -> None:
    tp = TopicPartition("ardary.sms.lifecycle-x", 11)
    assert parse_part_name(part_name(tp, 5, 99)) == (tp, 5, 99)
    assert parse_part_name("notes.txt") is None


def test_files_only_appear_by_atomic_rename(tmp_path: Path, monkeypatch) -> None:
    opened: list[str] = []
    renamed: list[tuple[str, str]] = []
    real_open, real_replace = open, os.replace

    def spy_open(path, *args, **kwargs):
        opened.append(os.path.basename(path))
        return real_open(path, *args, **kwargs)

    def spy_replace(src, dst):
        renamed.append((os.path.basename(src), os.path.basename(dst)))
        real_replace(src, dst)

    monkeypatch.setattr("builtins.open", spy_open)
    monkeypatch.setattr(os, "replace", spy_replace)
    sink = ParquetSink(tmp_path, "g")
    sink.setup()
    for i in range(10):  # two UTC days
        sink.add(
            "p.sms.lifecycle", 0, 100 + i, lifecycle(i, updated_at=T0 + timedelta(hours=3 * i))
        )
    sink.flush()
    monkeypatch.undo()

    finals = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert finals.count("part-p.sms.lifecycle-0-100-109.parquet") == 2
    assert "_offsets.json" in finals
    assert not any(name.startswith(".tmp-") for name in finals)
    # every final file was written under another name, then renamed into place
    assert not set(finals) & set(opened)
    assert sorted(dst for _, dst in renamed) == finals
    assert [dst for _, dst in renamed][-1] == "_offsets.json"  # offsets strictly after the data
    assert sorted(read_ids(tmp_path)) == sorted(f"m{i}" for i in range(10))


def test_crash_before_offsets_then_replay_writes_each_record_once(tmp_path: Path) -> None:
    recs = [lifecycle(i) for i in range(30)]
    first = ParquetSink(tmp_path, "g")
    first.setup()
    for i in range(10):
        first.add("t", 0, i, recs[i])
    first.flush()

    for i in range(10, 25):
        first.add("t", 0, i, recs[i])

    def crash(offsets) -> None:
        raise OSError("killed before the offsets were written")

    first._write_offsets = crash  # type: ignore[method-assign]
    with pytest.raises(SinkError):
        first.flush()
    assert len(read_ids(tmp_path)) == 25  # orphan data file on disk, offsets still say 10

    second = ParquetSink(tmp_path, "g")
    second.setup()  # drops the uncommitted file
    assert second.committed_offsets("g") == {TopicPartition("t", 0): 10}
    assert sorted(read_ids(tmp_path)) == sorted(f"m{i}" for i in range(10))
    # the replay uses other batch boundaries than the crashed run
    for i in range(10, 18):
        second.add("t", 0, i, recs[i])
    second.flush()
    for i in range(18, 30):
        second.add("t", 0, i, recs[i])
    second.flush()
    ids = read_ids(tmp_path)
    assert sorted(ids) == sorted(f"m{i}" for i in range(30))
    assert second.committed_offsets("g") == {TopicPartition("t", 0): 30}


def test_replay_of_the_same_batch_overwrites_the_same_file(tmp_path: Path) -> None:
    for _ in range(2):
        sink = ParquetSink(tmp_path, "g")
        sink.setup()
        for i in range(5):
            sink.add("t", 3, i, lifecycle(i))
        sink.flush()
    assert sorted(read_ids(tmp_path)) == sorted(f"m{i}" for i in range(5))

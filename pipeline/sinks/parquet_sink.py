"""Parquet warehouse sink: files per table and UTC day, written atomically, offsets in a JSON file.

Layout: `<root>/<table>/date=YYYY-MM-DD/part-<topic>-<partition>-<first>-<last>.parquet`, plus
`<root>/_offsets.json` (next offset per group, topic and partition).

Why this is exactly once, without transactions:
1. a data file is written under a temporary name and renamed (`os.replace`, atomic on POSIX):
   a reader sees a whole file or none;
2. the file name carries the partition and the offset range it holds, and `_offsets.json` is
   replaced (atomically too) only AFTER every data file of the flush is in place;
3. at start-up, files whose first offset is at or past the stored next offset belong to a flush
   that did not commit: they are deleted, and the replay from the stored offset writes those
   records again (under the same name if the batch boundaries match, else under a new one).
So each consumed record is in exactly one committed file. One consumer group per directory.

Parquet has no primary keys: files append. Insert-or-ignore tables are de-duplicated within a
file; across files (a callback redelivered minutes later) readers take DISTINCT ON the key.
Upsert tables (lifecycle, send results, metrics, opt-outs) keep every version: the current row
is the latest by its time column (`updated_at`, ...), e.g. in DuckDB
`SELECT * FROM read_parquet('root/sms_lifecycle/*/*.parquet', hive_partitioning=true)
 QUALIFY row_number() OVER (PARTITION BY id_sms_api ORDER BY updated_at DESC) = 1`.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pipeline import records
from pipeline.errors import SinkError
from pipeline.serde import SchemaStore
from pipeline.sinks.arrow import arrow_table
from pipeline.sinks.base import Batch, BatchingSink, TopicPartition
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.rows import dedupe, to_columns
from pipeline.sinks.schema_ddl import TableSpec

__all__ = ["OFFSETS_FILE", "ParquetSink", "parse_part_name", "part_name"]

OFFSETS_FILE = "_offsets.json"
_PART = re.compile(r"^part-(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.parquet$")


def part_name(tp: TopicPartition, first: int, last: int) -> str:
    """The file name of a batch: its partition and offset range (what makes a replay safe)."""
    return f"part-{tp.topic}-{tp.partition}-{first}-{last}.parquet"


def parse_part_name(name: str) -> tuple[TopicPartition, int, int] | None:
    """(partition, first, last) of a part file name; None for any other file."""
    m = _PART.match(name)
    if m is None:
        return None
    tp = TopicPartition(m["topic"], int(m["partition"]))
    return tp, int(m["first"]), int(m["last"])


def _fsync_write(path: Path, write: Any) -> None:
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ParquetSink(BatchingSink):
    """Writes Parquet files under one directory."""

    def __init__(
        self,
        root: str | Path,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = 50_000,
    ) -> None:
        super().__init__(group, store=store, pii=pii, max_batch=max_batch)
        self.root = Path(root)
        self._offsets: dict[str, dict[str, dict[str, int]]] = {}

    def setup(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._offsets = self._read_offsets()
            committed = self.committed_offsets(self.group)
            for path in self.root.glob("*/date=*/*"):
                if path.name.startswith(".tmp-"):
                    path.unlink(missing_ok=True)  # a write interrupted before its rename
                    continue
                parsed = parse_part_name(path.name)
                if parsed is None:
                    continue
                tp, first, _ = parsed
                if first >= committed.get(tp, 0):
                    path.unlink()  # written by a flush whose offsets never committed
        except OSError as exc:
            raise SinkError(f"Parquet setup of {self.root} failed: {exc}") from exc

    def _read_offsets(self) -> dict[str, dict[str, dict[str, int]]]:
        path = self.root / OFFSETS_FILE
        if not path.exists():
            return {}
        try:
            data: dict[str, dict[str, dict[str, int]]] = json.loads(path.read_text("utf-8"))
        except ValueError as exc:
            raise SinkError(f"{path} is not valid JSON") from exc
        return data

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        return {
            TopicPartition(topic, int(partition)): int(offset)
            for topic, partitions in self._offsets.get(group, {}).items()
            for partition, offset in partitions.items()
        }

    def _write(self, batches: Mapping[TopicPartition, Batch]) -> dict[str, int]:
        written: dict[str, int] = {}
        try:
            for tp, batch in batches.items():
                per_table: dict[TableSpec, list[records.Record]] = {}
                for record in batch.records:
                    spec = self.table_for(record)
                    if spec is not None:
                        per_table.setdefault(spec, []).append(record)
                for spec, recs in per_table.items():
                    rows = self._write_table(spec, tp, batch, recs)
                    written[spec.name] = written.get(spec.name, 0) + rows
            updated = json.loads(json.dumps(self._offsets))  # a copy: commit only on success
            mine = updated.setdefault(self.group, {})
            for tp, batch in batches.items():
                mine.setdefault(tp.topic, {})[str(tp.partition)] = batch.last_offset + 1
            self._write_offsets(updated)
            self._offsets = updated
        except OSError as exc:
            raise SinkError(f"Parquet write under {self.root} failed: {exc}") from exc
        return written

    def _write_table(
        self, spec: TableSpec, tp: TopicPartition, batch: Batch, recs: list[records.Record]
    ) -> int:
        by_day: dict[str, list[records.Record]] = {}
        for record in dedupe(spec, recs) if spec.mode == "ignore" else recs:
            when = getattr(record, spec.time_column, None)
            day = when.date().isoformat() if isinstance(when, datetime) else "unknown"
            by_day.setdefault(day, []).append(record)
        for day, day_records in by_day.items():
            table = arrow_table(spec, to_columns(spec, day_records, self.pii))
            directory = self.root / spec.name / f"date={day}"
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / part_name(tp, batch.first_offset, batch.last_offset)
            _fsync_write(path, lambda f, t=table: pq.write_table(t, f))
        return sum(len(v) for v in by_day.values())

    def _write_offsets(self, offsets: Mapping[str, Any]) -> None:
        body = json.dumps(offsets, indent=1, sort_keys=True).encode()
        _fsync_write(self.root / OFFSETS_FILE, lambda f: f.write(body))

    def close(self) -> None:
        """Nothing to release: every flush closes its files."""

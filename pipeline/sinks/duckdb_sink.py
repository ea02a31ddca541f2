"""DuckDB warehouse sink: Arrow batches merged by INSERT ... ON CONFLICT, offsets alongside."""

# ruff: noqa: S608  -- identifiers come from the schema-derived table specs, values are bound

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb

from pipeline.errors import SinkError
from pipeline.serde import SchemaStore
from pipeline.sinks.arrow import arrow_table
from pipeline.sinks.base import Batch, BatchingSink, TopicPartition
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.rows import dedupe, to_columns
from pipeline.sinks.schema_ddl import (
    OFFSETS_TABLE,
    TableSpec,
    create_offsets_sql,
    create_table_sql,
    migration_sql,
)
from pipeline.sinks.views import view_sql

__all__ = ["DuckDBSink", "merge_sql"]

_STAGE = "_sink_batch"


def merge_sql(spec: TableSpec, source: str, json_cast: str = "JSON") -> str:
    """INSERT ... SELECT from `source` with the table's conflict rule (upsert or ignore)."""
    cols = ", ".join(f'"{c}"' for c in spec.column_names)
    select = ", ".join(
        f'CAST("{c.name}" AS {json_cast})' if c.kind == "map" else f'"{c.name}"'
        for c in spec.columns
    )
    keys = ", ".join(f'"{k}"' for k in spec.primary_key)
    sql = f"INSERT INTO {spec.name} ({cols}) SELECT {select} FROM {source} ON CONFLICT ({keys}) "
    updates = [c for c in spec.column_names if c not in spec.primary_key]
    if spec.mode == "ignore" or not updates:
        return sql + "DO NOTHING"
    return sql + "DO UPDATE SET " + ", ".join(f'"{c}" = excluded."{c}"' for c in updates)


class DuckDBSink(BatchingSink):
    """Writes to one DuckDB file (single writer process: DuckDB locks the file)."""

    def __init__(
        self,
        path: str | Path,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = 50_000,
    ) -> None:
        super().__init__(group, store=store, pii=pii, max_batch=max_batch)
        self.path = str(path)
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            raise SinkError("DuckDB sink used before setup()")
        return self._conn

    def setup(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = duckdb.connect(self.path)
            conn = self._conn
            conn.execute("SET TimeZone = 'UTC'")
            for spec in self.tables:
                conn.execute(create_table_sql(spec, "duckdb"))
                existing = [
                    row[0]
                    for row in conn.execute(
                        "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                        [spec.name],
                    ).fetchall()
                ]
                for statement in migration_sql(spec, existing, "duckdb"):
                    conn.execute(statement)
            conn.execute(create_offsets_sql("duckdb"))
            for statement in view_sql("duckdb"):
                conn.execute(statement)
        except duckdb.Error as exc:
            raise SinkError(f"DuckDB setup of {self.path} failed: {exc}") from exc

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        try:
            rows = self.conn.execute(
                f"SELECT topic, partition, next_offset FROM {OFFSETS_TABLE} "
                "WHERE consumer_group = ?",
                [group],
            ).fetchall()
        except duckdb.Error as exc:
            raise SinkError(f"cannot read offsets: {exc}") from exc
        return {TopicPartition(t, p): o for t, p, o in rows}

    def _write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        conn = self.conn
        written = 0
        try:
            conn.begin()
            for spec, recs in self.group_by_table(batches).items():
                unique = dedupe(spec, recs)
                table = arrow_table(spec, to_columns(spec, unique, self.pii))
                conn.register(_STAGE, table)
                try:
                    conn.execute(merge_sql(spec, _STAGE))
                finally:
                    conn.unregister(_STAGE)
                written += len(unique)
            self._write_offsets(conn, batches)
            conn.commit()
        except duckdb.Error as exc:
            conn.rollback()
            raise SinkError(f"DuckDB write failed: {exc}") from exc
        except BaseException:
            conn.rollback()
            raise
        return written

    def _write_offsets(self, conn: Any, batches: Mapping[TopicPartition, Batch]) -> None:
        conn.executemany(
            f"INSERT INTO {OFFSETS_TABLE} VALUES (?, ?, ?, ?) ON CONFLICT "
            "(consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [[self.group, tp.topic, tp.partition, b.last_offset + 1] for tp, b in batches.items()],
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

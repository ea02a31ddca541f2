"""DuckDB warehouse sink: Arrow batches merged by INSERT ... ON CONFLICT, offsets alongside."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from pipeline.serde import SchemaStore
from pipeline.sinks.arrow import arrow_table
from pipeline.sinks.base import DEFAULT_MAX_BATCH
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.schema_ddl import TableSpec
from pipeline.sinks.sql import SqlSink, merge_sql

__all__ = ["DuckDBSink"]

_STAGE = "_sink_batch"


class DuckDBSink(SqlSink):
    """Writes to one DuckDB file (single writer process: DuckDB locks the file)."""

    dialect = "duckdb"
    placeholder = "?"
    driver_error = duckdb.Error
    columns_query = "SELECT column_name FROM information_schema.columns WHERE table_name = ?"

    def __init__(
        self,
        path: str | Path,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(group, label=f"DuckDB {path}", store=store, pii=pii, max_batch=max_batch)
        self.path = str(path)

    def _connect(self) -> Any:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = duckdb.connect(self.path)
        conn.execute("SET TimeZone = 'UTC'")
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        conn = self.conn
        conn.begin()
        try:
            yield
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _load(self, conn: Any, spec: TableSpec, columns: Mapping[str, list[Any]]) -> None:
        # DuckDB reads a registered Arrow table in place: no row-by-row copy
        conn.register(_STAGE, arrow_table(spec, columns))
        try:
            conn.execute(merge_sql(spec, _STAGE))
        finally:
            conn.unregister(_STAGE)

    def _execute_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(sql, rows)

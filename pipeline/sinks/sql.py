"""The SQL warehouses' shared shape: migrate at setup, merge rows and store offsets in one go.

`SqlSink` holds what DuckDB and PostgreSQL do alike: create and migrate the tables (additive
only, from the Avro schemas), the offsets table and the views; read the stored offsets; and write
a set of batches as ONE transaction — per table, de-duplicate by primary key, build the columns,
load them and merge them (`merge_sql`), then store each partition's next offset. A subclass gives
only what differs: its driver (connect, transaction, bulk statements), its dialect, and how a
batch reaches the database (DuckDB registers an Arrow table, PostgreSQL COPYs into a temporary
table).
"""

# ruff: noqa: S608  -- identifiers come from the schema-derived table specs, values are bound

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from pipeline.errors import SinkError
from pipeline.serde import SchemaStore
from pipeline.sinks.base import DEFAULT_MAX_BATCH, Batch, BatchingSink, TopicPartition
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.rows import dedupe, to_columns
from pipeline.sinks.schema_ddl import (
    OFFSETS_TABLE,
    Dialect,
    TableSpec,
    create_offsets_sql,
    create_table_sql,
    migration_sql,
)
from pipeline.sinks.views import view_sql

__all__ = ["SqlSink", "merge_sql"]


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


class SqlSink(BatchingSink):
    """A SQL database holding the tables, the analytics views and the offsets (`_offsets`)."""

    dialect: ClassVar[Dialect]
    placeholder: ClassVar[str]  # the driver's parameter marker: "?" or "%s"
    driver_error: ClassVar[type[Exception]]  # the driver's root exception, wrapped in SinkError
    columns_query: ClassVar[str]  # column names of the table named by the one parameter

    def __init__(
        self,
        group: str,
        *,
        label: str,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        super().__init__(group, store=store, pii=pii, max_batch=max_batch)
        self.label = label  # names the warehouse in errors; never carries a secret
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        """The open connection (SinkError before `setup`)."""
        if self._conn is None:
            raise SinkError(f"{self.label} sink used before setup()")
        return self._conn

    # -- what a dialect provides --
    @abstractmethod
    def _connect(self) -> Any:
        """Open the connection."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """One transaction on `conn`: committed at the end, rolled back on any exception."""

    @abstractmethod
    def _load(self, conn: Any, spec: TableSpec, columns: Mapping[str, list[Any]]) -> None:
        """Merge a batch's columns (unique per primary key) into `spec`'s table."""

    @abstractmethod
    def _execute_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run `sql` once per row, inside the current transaction."""

    def _migration(self) -> AbstractContextManager[Any]:
        """What the migration runs in; by default each statement commits on its own."""
        return contextlib.nullcontext()

    def _prepare(self, conn: Any) -> None:
        """Set up what the writes need once the tables exist (PostgreSQL: its staging tables)."""

    # -- the Sink --
    def setup(self) -> None:
        try:
            self._conn = self._connect()
            with self._migration():
                self._migrate(self._conn)
            self._prepare(self._conn)
        except self.driver_error as exc:
            self.close()
            raise SinkError(f"{self.label} setup failed: {type(exc).__name__}: {exc}") from exc

    def _migrate(self, conn: Any) -> None:
        for spec in self.tables:
            conn.execute(create_table_sql(spec, self.dialect))
            existing = [row[0] for row in conn.execute(self.columns_query, [spec.name]).fetchall()]
            for statement in migration_sql(spec, existing, self.dialect):
                conn.execute(statement)
        conn.execute(create_offsets_sql(self.dialect))
        for statement in view_sql(self.dialect):
            conn.execute(statement)

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        sql = (
            f"SELECT topic, partition, next_offset FROM {OFFSETS_TABLE} "
            f"WHERE consumer_group = {self.placeholder}"
        )
        try:
            with self._transaction():
                rows = self.conn.execute(sql, [group]).fetchall()
        except self.driver_error as exc:
            raise SinkError(f"cannot read offsets: {type(exc).__name__}: {exc}") from exc
        return {TopicPartition(t, p): o for t, p, o in rows}

    def _write(self, batches: Mapping[TopicPartition, Batch]) -> dict[str, int]:
        conn = self.conn
        written: dict[str, int] = {}
        try:
            with self._transaction():
                for spec, recs in self.group_by_table(batches).items():
                    unique = dedupe(spec, recs)
                    self._load(conn, spec, to_columns(spec, unique, self.pii))
                    written[spec.name] = len(unique)
                self._write_offsets(conn, batches)
        except self.driver_error as exc:
            raise SinkError(f"{self.label} write failed: {type(exc).__name__}: {exc}") from exc
        return written

    def _write_offsets(self, conn: Any, batches: Mapping[TopicPartition, Batch]) -> None:
        """Each partition's next offset, in the rows' transaction: what a restart resumes from."""
        p = self.placeholder
        self._execute_many(
            conn,
            f"INSERT INTO {OFFSETS_TABLE} VALUES ({p}, {p}, {p}, {p}) ON CONFLICT "
            "(consumer_group, topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            [(self.group, tp.topic, tp.partition, b.last_offset + 1) for tp, b in batches.items()],
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

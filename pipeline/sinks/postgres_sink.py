"""PostgreSQL warehouse sink: COPY into a staging table, then INSERT ... ON CONFLICT."""

# ruff: noqa: S608  -- identifiers come from the schema-derived table specs, values are bound

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from pipeline.errors import SinkError
from pipeline.serde import SchemaStore
from pipeline.sinks.base import Batch, BatchingSink, TopicPartition
from pipeline.sinks.duckdb_sink import merge_sql
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

__all__ = ["PostgresSink"]


def _stage(spec: TableSpec) -> str:
    return f"_stage_{spec.name}"


class PostgresSink(BatchingSink):
    """Writes to a PostgreSQL database; several sink processes may share it (one per group)."""

    def __init__(
        self,
        dsn: str,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = 50_000,
    ) -> None:
        super().__init__(group, store=store, pii=pii, max_batch=max_batch)
        self.dsn = dsn
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise SinkError("PostgreSQL sink used before setup()")
        return self._conn

    def setup(self) -> None:
        try:
            self._conn = psycopg.connect(self.dsn, autocommit=False)
            conn = self._conn
            with conn.transaction():
                # one sink at a time migrates: concurrent CREATE/ALTER would race
                conn.execute("SELECT pg_advisory_xact_lock(4242424242)")
                for spec in self.tables:
                    conn.execute(create_table_sql(spec, "postgres"))
                    existing = [
                        row[0]
                        for row in conn.execute(
                            "SELECT column_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema() AND table_name = %s",
                            [spec.name],
                        ).fetchall()
                    ]
                    for statement in migration_sql(spec, existing, "postgres"):
                        conn.execute(statement)
                conn.execute(create_offsets_sql("postgres"))
                for statement in view_sql("postgres"):
                    conn.execute(statement)
            with conn.transaction():
                for spec in self.tables:
                    conn.execute(
                        f"CREATE TEMP TABLE IF NOT EXISTS {_stage(spec)} "
                        f"(LIKE {spec.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                    )
        except psycopg.Error as exc:
            self.close()
            raise SinkError(f"PostgreSQL setup failed: {type(exc).__name__}: {exc}") from exc

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        try:
            with self.conn.transaction():
                rows = self.conn.execute(
                    f"SELECT topic, partition, next_offset FROM {OFFSETS_TABLE} "
                    "WHERE consumer_group = %s",
                    [group],
                ).fetchall()
        except psycopg.Error as exc:
            raise SinkError(f"cannot read offsets: {type(exc).__name__}") from exc
        return {TopicPartition(t, p): o for t, p, o in rows}

    def _write(self, batches: Mapping[TopicPartition, Batch]) -> int:
        conn = self.conn
        written = 0
        try:
            with conn.transaction():
                for spec, recs in self.group_by_table(batches).items():
                    unique = dedupe(spec, recs)
                    columns = to_columns(spec, unique, self.pii)
                    names = spec.column_names
                    cols = ", ".join(f'"{c}"' for c in names)
                    with (
                        conn.cursor() as cur,
                        cur.copy(f"COPY {_stage(spec)} ({cols}) FROM STDIN") as copy,
                    ):
                        for row in zip(*(columns[n] for n in names), strict=True):
                            copy.write_row(row)
                    conn.execute(merge_sql(spec, _stage(spec), json_cast="JSONB"))
                    written += len(unique)
                self._write_offsets(conn, batches)
        except psycopg.Error as exc:
            raise SinkError(f"PostgreSQL write failed: {type(exc).__name__}: {exc}") from exc
        return written

    def _write_offsets(self, conn: Any, batches: Mapping[TopicPartition, Batch]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {OFFSETS_TABLE} VALUES (%s, %s, %s, %s) ON CONFLICT "
                "(consumer_group, topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [
                    (self.group, tp.topic, tp.partition, b.last_offset + 1)
                    for tp, b in batches.items()
                ],
            )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

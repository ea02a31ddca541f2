"""PostgreSQL warehouse sink: COPY into a staging table, then INSERT ... ON CONFLICT."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg

from pipeline.serde import SchemaStore
from pipeline.sinks.base import DEFAULT_MAX_BATCH
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.schema_ddl import TableSpec
from pipeline.sinks.sql import SqlSink, merge_sql

__all__ = ["PostgresSink"]

_MIGRATION_LOCK = 4242424242  # pg_advisory_xact_lock key: one sink at a time migrates


def _stage(spec: TableSpec) -> str:
    return f"_stage_{spec.name}"


class PostgresSink(SqlSink):
    """Writes to a PostgreSQL database; several sink processes may share it (one per group)."""

    dialect = "postgres"
    placeholder = "%s"
    driver_error = psycopg.Error
    columns_query = (
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s"
    )

    def __init__(
        self,
        dsn: str,
        group: str,
        *,
        store: SchemaStore | None = None,
        pii: PiiPolicy | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        # the DSN may hold a password: errors name the engine only
        super().__init__(group, label="PostgreSQL", store=store, pii=pii, max_batch=max_batch)
        self.dsn = dsn

    def _connect(self) -> Any:
        return psycopg.connect(self.dsn, autocommit=False)

    @contextmanager
    def _migration(self) -> Iterator[None]:
        with self.conn.transaction():
            # concurrent CREATE/ALTER by two sinks would race
            self.conn.execute(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            yield

    def _prepare(self, conn: Any) -> None:
        with conn.transaction():
            for spec in self.tables:
                conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS {_stage(spec)} "
                    f"(LIKE {spec.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )

    def _transaction(self) -> AbstractContextManager[Any]:
        return self.conn.transaction()  # type: ignore[no-any-return]

    def _load(self, conn: Any, spec: TableSpec, columns: Mapping[str, list[Any]]) -> None:
        names = spec.column_names
        cols = ", ".join(f'"{c}"' for c in names)
        with conn.cursor() as cur, cur.copy(f"COPY {_stage(spec)} ({cols}) FROM STDIN") as copy:
            for row in zip(*(columns[n] for n in names), strict=True):
                copy.write_row(row)
        conn.execute(merge_sql(spec, _stage(spec), json_cast="JSONB"))

    def _execute_many(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with conn.cursor() as cur:
            cur.executemany(sql, rows)

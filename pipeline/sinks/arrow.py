"""Column batches as Arrow tables, typed from the table spec (shared by DuckDB and Parquet)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from pipeline.errors import SinkError
from pipeline.sinks.schema_ddl import ColumnKind, TableSpec

__all__ = ["arrow_schema", "arrow_table"]

_ARROW: Mapping[ColumnKind, Any] = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
    "timestamp": pa.timestamp("ms", tz="UTC"),
    "array": pa.list_(pa.string()),
    "map": pa.string(),  # JSON text; the SQL side casts it to JSON/JSONB
}


def arrow_schema(spec: TableSpec) -> Any:
    """The Arrow schema of a table's batch."""
    return pa.schema([pa.field(c.name, _ARROW[c.kind]) for c in spec.columns])


def arrow_table(spec: TableSpec, columns: Mapping[str, list[Any]]) -> Any:
    """An Arrow table of the columns; a value that does not fit its type is a SinkError."""
    schema = arrow_schema(spec)
    try:
        return pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        raise SinkError(f"cannot convert a {spec.name} batch: {exc}") from exc

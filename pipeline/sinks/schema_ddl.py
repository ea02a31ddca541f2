"""Warehouse tables derived from the Avro schemas: columns, keys, DDL and additive migrations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pipeline.serde import SchemaStore
from pipeline.topics import TOPICS, WriteMode

__all__ = [
    "OFFSETS_TABLE",
    "ColumnKind",
    "ColumnSpec",
    "Dialect",
    "TableSpec",
    "avro_field_kind",
    "create_offsets_sql",
    "create_table_sql",
    "migration_sql",
    "sql_type",
    "table_specs",
]

Dialect: TypeAlias = Literal["duckdb", "postgres"]
ColumnKind: TypeAlias = Literal[
    "string", "int", "long", "double", "boolean", "bytes", "timestamp", "array", "map"
]

OFFSETS_TABLE = "_offsets"

_SQL_TYPES: Mapping[ColumnKind, tuple[str, str]] = {
    "string": ("VARCHAR", "TEXT"),
    "int": ("INTEGER", "INTEGER"),
    "long": ("BIGINT", "BIGINT"),
    "double": ("DOUBLE", "DOUBLE PRECISION"),
    "boolean": ("BOOLEAN", "BOOLEAN"),
    "bytes": ("BLOB", "BYTEA"),
    "timestamp": ("TIMESTAMPTZ", "TIMESTAMPTZ"),
    "array": ("VARCHAR[]", "TEXT[]"),
    "map": ("JSON", "JSONB"),
}


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One column: its Avro-derived kind and whether the schema allows null."""

    name: str
    kind: ColumnKind
    nullable: bool


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A warehouse table fed by one record type: its topic's `WarehouseTable` plus the columns."""

    name: str
    record: str
    columns: tuple[ColumnSpec, ...]
    primary_key: tuple[str, ...]
    mode: WriteMode
    time_column: str  # the event time that partitions Parquet files by day

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnSpec:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)


def avro_field_kind(avro_type: Any) -> tuple[ColumnKind, bool]:
    """The column kind of an Avro field type, and whether it is nullable (a union with null)."""
    nullable = False
    if isinstance(avro_type, list):
        branches = [t for t in avro_type if t != "null"]
        nullable = len(branches) != len(avro_type)
        if len(branches) != 1:
            raise ValueError(f"unsupported union {avro_type!r}")
        avro_type = branches[0]
    if isinstance(avro_type, str):
        if avro_type in ("string", "int", "long", "double", "boolean", "bytes"):
            return avro_type, nullable  # type: ignore[return-value]
        if avro_type == "float":
            return "double", nullable
        raise ValueError(f"unsupported Avro type {avro_type!r}")
    kind = avro_type.get("type")
    if avro_type.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
        return "timestamp", nullable
    if kind == "enum":
        return "string", nullable
    if kind == "array" and avro_type.get("items") == "string":
        return "array", nullable
    if kind == "map" and avro_type.get("values") == "string":
        return "map", nullable
    if isinstance(kind, str) and not avro_type.get("logicalType"):
        return avro_field_kind(kind)[0], nullable
    raise ValueError(f"unsupported Avro type {avro_type!r}")


def table_specs(store: SchemaStore) -> tuple[TableSpec, ...]:
    """Every table of `pipeline.topics.TOPICS` the sink loads, its columns from the schemas."""
    specs = []
    for topic in TOPICS:
        load = topic.warehouse
        if load is None:
            continue  # not loaded into the warehouse
        record = topic.record.__name__
        schema = store.current(record).parsed
        columns = []
        for field in schema["fields"]:
            kind, nullable = avro_field_kind(field["type"])
            columns.append(ColumnSpec(field["name"], kind, nullable))
        specs.append(
            TableSpec(
                load.table, record, tuple(columns), load.primary_key, load.mode, load.time_column
            )
        )
    return tuple(specs)


def sql_type(kind: ColumnKind, dialect: Dialect) -> str:
    duck, pg = _SQL_TYPES[kind]
    return duck if dialect == "duckdb" else pg


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(spec: TableSpec, dialect: Dialect) -> str:
    """CREATE TABLE IF NOT EXISTS; key columns NOT NULL, the rest nullable (evolution-safe)."""
    cols = [
        f"{_quote(c.name)} {sql_type(c.kind, dialect)}"
        + (" NOT NULL" if c.name in spec.primary_key else "")
        for c in spec.columns
    ]
    pk = ", ".join(_quote(k) for k in spec.primary_key)
    return f"CREATE TABLE IF NOT EXISTS {spec.name} ({', '.join(cols)}, PRIMARY KEY ({pk}))"


def create_offsets_sql(dialect: Dialect) -> str:
    """The offsets table: the next offset to read per group and partition, the sink's truth."""
    text = "VARCHAR" if dialect == "duckdb" else "TEXT"
    return (
        f"CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (consumer_group {text} NOT NULL, "
        f"topic {text} NOT NULL, partition INTEGER NOT NULL, next_offset BIGINT NOT NULL, "
        "PRIMARY KEY (consumer_group, topic, partition))"
    )


def migration_sql(spec: TableSpec, existing: Iterable[str], dialect: Dialect) -> list[str]:
    """ALTER TABLE statements adding, as nullable, every schema field the table lacks.

    Additive only: the schemas evolve by adding defaulted fields, so rows written before the
    change read NULL in the new column; a column the schema dropped is kept.
    """
    have = {c.lower() for c in existing}
    return [
        f"ALTER TABLE {spec.name} ADD COLUMN {_quote(c.name)} {sql_type(c.kind, dialect)}"
        for c in spec.columns
        if c.name.lower() not in have
    ]

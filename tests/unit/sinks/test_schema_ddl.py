"""Tables derived from the Avro schemas: types, keys and additive migrations."""

from __future__ import annotations

import json

import pytest

from pipeline.serde import SchemaStore, default_schema_dir
from pipeline.sinks.schema_ddl import (
    avro_field_kind,
    create_table_sql,
    migration_sql,
    sql_type,
    table_specs,
)


def test_every_table_has_one_column_per_schema_field() -> None:
    store = SchemaStore.load()
    for spec in table_specs(store):
        raw = json.loads((default_schema_dir() / f"{spec.record}.avsc").read_text())
        assert spec.column_names == tuple(f["name"] for f in raw["fields"])
        assert set(spec.primary_key) <= set(spec.column_names)


@pytest.mark.parametrize(
    ("avro", "duck", "pg"),
    [
        ("string", "VARCHAR", "TEXT"),
        ("int", "INTEGER", "INTEGER"),
        ("long", "BIGINT", "BIGINT"),
        ("double", "DOUBLE", "DOUBLE PRECISION"),
        ("boolean", "BOOLEAN", "BOOLEAN"),
        ("bytes", "BLOB", "BYTEA"),
        ({"type": "long", "logicalType": "timestamp-millis"}, "TIMESTAMPTZ", "TIMESTAMPTZ"),
        ({"type": "array", "items": "string"}, "VARCHAR[]", "TEXT[]"),
        ({"type": "map", "values": "string"}, "JSON", "JSONB"),
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "VARCHAR", "TEXT"),
    ],
)
def test_avro_types_map_to_sql_types(avro: object, duck: str, pg: str) -> None:
    kind, nullable = avro_field_kind(avro)
    assert (sql_type(kind, "duckdb"), sql_type(kind, "postgres")) == (duck, pg)
    assert nullable is False
    assert avro_field_kind(["null", avro])[1] is True


def test_migration_adds_only_missing_columns_as_nullable() -> None:
    spec = next(s for s in table_specs(SchemaStore.load()) if s.name == "sms_lifecycle")
    have = [c for c in spec.column_names if c != "metadata"]
    statements = migration_sql(spec, have, "postgres")
    assert statements == ['ALTER TABLE sms_lifecycle ADD COLUMN "metadata" JSONB']
    assert migration_sql(spec, spec.column_names, "duckdb") == []
    assert "NOT NULL" not in statements[0]


def test_only_key_columns_are_not_null() -> None:
    spec = next(s for s in table_specs(SchemaStore.load()) if s.name == "metrics_sms")
    sql = create_table_sql(spec, "duckdb")
    assert sql.count("NOT NULL") == len(spec.primary_key) == 3
    assert 'PRIMARY KEY ("window", "window_start", "login")' in sql

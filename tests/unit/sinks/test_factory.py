"""The sink factory opens the sink class the warehouse registry names for a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.sinks.base import BatchingSink
from pipeline.sinks.duckdb_sink import DuckDBSink
from pipeline.sinks.factory import open_sink, sink_class
from pipeline.sinks.parquet_sink import ParquetSink
from pipeline.sinks.postgres_sink import PostgresSink
from pipeline.warehouses import WAREHOUSES, Warehouse


@pytest.mark.parametrize("warehouse", WAREHOUSES, ids=lambda w: w.name)
def test_every_registered_warehouse_names_a_batching_sink(warehouse: Warehouse) -> None:
    cls = sink_class(warehouse)
    assert isinstance(cls, type) and issubclass(cls, BatchingSink)


def test_open_sink_builds_the_named_class_with_its_target(tmp_path: Path) -> None:
    duck = open_sink(f"duckdb:///{tmp_path}/w.duckdb", "g", max_batch=7)
    assert isinstance(duck, DuckDBSink)
    assert (duck.path, duck.group, duck.max_batch) == (f"{tmp_path}/w.duckdb", "g", 7)
    pg = open_sink("postgres://u:secret@h/db", "g")  # not connected before setup()
    assert isinstance(pg, PostgresSink) and pg.dsn == "postgres://u:secret@h/db"
    assert "secret" not in pg.label
    lake = open_sink(f"parquet:///{tmp_path}/lake", "g")
    assert isinstance(lake, ParquetSink) and lake.root == tmp_path / "lake"


def test_an_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^WAREHOUSE_URL: must start with duckdb://"):
        open_sink("mysql://x", "g")


def test_a_registry_entry_that_is_no_sink_is_refused() -> None:
    bogus = Warehouse("Bogus", ("bogus",), "pipeline.sinks.base:TopicPartition", "path")
    with pytest.raises(TypeError, match="is not a BatchingSink"):
        sink_class(bogus)

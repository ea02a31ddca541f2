"""The warehouse registry: the one list of WAREHOUSE_URL schemes settings and the sink share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.warehouses import WAREHOUSES, scheme_list, url_path, warehouse_for


def test_the_registered_schemes() -> None:
    assert {s: w.name for w in WAREHOUSES for s in w.schemes} == {
        "duckdb": "DuckDB",
        "postgresql": "PostgreSQL",
        "postgres": "PostgreSQL",
        "parquet": "Parquet",
    }
    assert scheme_list() == "duckdb://, postgresql:// or parquet://"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("duckdb:///./data/warehouse.duckdb", "./data/warehouse.duckdb"),
        ("duckdb:////abs/x.duckdb", "/abs/x.duckdb"),
        ("duckdb://", ":memory:"),
        ("postgresql://u:p@h:5432/db", "postgresql://u:p@h:5432/db"),
        ("postgres://h/db", "postgres://h/db"),
        ("parquet:///lake", "lake"),
        ("parquet:////abs/lake", "/abs/lake"),
    ],
)
def test_what_each_sink_class_is_given(url: str, target: str) -> None:
    warehouse = warehouse_for(url)
    assert warehouse is not None
    assert warehouse.target_of(url) == target


def test_other_urls_are_no_warehouse() -> None:
    for url in ("mysql://x", "duckdb:/x", "DuckDB:///x", "", "parquet"):
        assert warehouse_for(url) is None
    assert url_path("duckdb:///x.duckdb", "duckdb") == "x.duckdb"


def test_settings_validate_with_the_registry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    for warehouse in WAREHOUSES:
        for scheme in warehouse.schemes:
            url = f"{scheme}:///x"
            assert load_settings(warehouse_url=url).warehouse_url == url
    with pytest.raises(ConfigError) as info:
        load_settings(warehouse_url="mysql://x")
    assert str(info.value) == f"WAREHOUSE_URL: must start with {scheme_list()}"


def test_settings_import_no_warehouse_library() -> None:
    code = (
        "import sys, pipeline.settings\n"
        "print(sorted(m for m in ('duckdb', 'psycopg', 'pyarrow', 'pipeline.sinks') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"

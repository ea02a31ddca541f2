"""The warehouses a WAREHOUSE_URL may name: one registry for the settings and the sink factory.

Each entry names its URL schemes and its sink class as `"module:Class"` text, so this module
(a foundation: `pipeline.settings` validates WAREHOUSE_URL with it) imports no warehouse library
and nothing above it; `pipeline.sinks.factory` imports the class when a sink is opened. Adding a
warehouse is one entry here plus its sink class (see `docs/architecture.md`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["WAREHOUSES", "Warehouse", "scheme_list", "url_path", "warehouse_for"]


@dataclass(frozen=True, slots=True)
class Warehouse:
    """A kind of warehouse: its URL schemes, its sink class, and what that class is given.

    `target` is what the sink class receives as its first argument: `"path"`, the URL's path
    (`duckdb:///data/x.duckdb` → `data/x.duckdb`, or `default_path` when empty), or `"url"`,
    the whole URL (a PostgreSQL DSN). The first scheme is the one error messages name.
    """

    name: str
    schemes: tuple[str, ...]
    sink: str  # "pipeline.sinks.duckdb_sink:DuckDBSink"
    target: Literal["path", "url"]
    default_path: str = ""

    def matches(self, url: str) -> bool:
        return any(url.startswith(f"{scheme}://") for scheme in self.schemes)

    def target_of(self, url: str) -> str:
        """The sink class's first argument for `url` (which this warehouse `matches`)."""
        if self.target == "url":
            return url
        scheme = next(s for s in self.schemes if url.startswith(f"{s}://"))
        return url_path(url, scheme) or self.default_path


WAREHOUSES: tuple[Warehouse, ...] = (
    Warehouse("DuckDB", ("duckdb",), "pipeline.sinks.duckdb_sink:DuckDBSink", "path", ":memory:"),
    Warehouse(
        "PostgreSQL",
        ("postgresql", "postgres"),
        "pipeline.sinks.postgres_sink:PostgresSink",
        "url",
    ),
    Warehouse("Parquet", ("parquet",), "pipeline.sinks.parquet_sink:ParquetSink", "path"),
)


def warehouse_for(url: str) -> Warehouse | None:
    """The warehouse whose scheme `url` starts with; None for any other URL."""
    return next((w for w in WAREHOUSES if w.matches(url)), None)


def scheme_list() -> str:
    """The accepted schemes for people: `duckdb://, postgresql:// or parquet://`."""
    names = [f"{w.schemes[0]}://" for w in WAREHOUSES]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def url_path(url: str, scheme: str) -> str:
    """The path of `scheme:///path` (SQLAlchemy style: `duckdb:////abs/x.duckdb` is absolute)."""
    rest = url[len(scheme) + 3 :]
    return rest[1:] if rest.startswith("/") else rest

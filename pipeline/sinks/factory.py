"""Pick the warehouse sink a WAREHOUSE_URL names, with the PII policy the settings ask for."""

from __future__ import annotations

from pipeline.errors import ConfigError
from pipeline.serde import SchemaStore
from pipeline.settings import Settings
from pipeline.sinks.base import BatchingSink
from pipeline.sinks.pii import PiiPolicy

__all__ = ["open_sink", "pii_policy", "url_path"]


def url_path(url: str, scheme: str) -> str:
    """The path of `scheme:///path` (SQLAlchemy style: `duckdb:////abs/x.duckdb` is absolute)."""
    rest = url[len(scheme) + 3 :]
    return rest[1:] if rest.startswith("/") else rest


def pii_policy(settings: Settings) -> PiiPolicy:
    """The PII policy of WAREHOUSE_PII / WAREHOUSE_PII_KEY."""
    if settings.warehouse_pii == "hash":
        if settings.warehouse_pii_key is None:
            raise ConfigError("WAREHOUSE_PII_KEY: needed when WAREHOUSE_PII=hash")
        return PiiPolicy("hash", settings.warehouse_pii_key.get_secret_value().encode())
    return PiiPolicy("raw")


def open_sink(
    url: str,
    group: str,
    *,
    pii: PiiPolicy | None = None,
    store: SchemaStore | None = None,
    max_batch: int = 50_000,
) -> BatchingSink:
    """A sink for `duckdb:///…`, `postgresql://…` or `parquet:///…` (not yet set up)."""
    if url.startswith("duckdb://"):
        from pipeline.sinks.duckdb_sink import DuckDBSink

        path = url_path(url, "duckdb") or ":memory:"
        return DuckDBSink(path, group, store=store, pii=pii, max_batch=max_batch)
    if url.startswith(("postgresql://", "postgres://")):
        from pipeline.sinks.postgres_sink import PostgresSink

        return PostgresSink(url, group, store=store, pii=pii, max_batch=max_batch)
    if url.startswith("parquet://"):
        from pipeline.sinks.parquet_sink import ParquetSink

        return ParquetSink(
            url_path(url, "parquet"), group, store=store, pii=pii, max_batch=max_batch
        )
    raise ConfigError("WAREHOUSE_URL: must start with duckdb://, postgresql:// or parquet://")

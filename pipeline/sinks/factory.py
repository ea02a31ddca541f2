"""Open the warehouse sink a WAREHOUSE_URL names, with the PII policy the settings ask for."""

from __future__ import annotations

import importlib
from typing import Protocol, cast

from pipeline.errors import ConfigError
from pipeline.serde import SchemaStore
from pipeline.settings import Settings
from pipeline.sinks.base import DEFAULT_MAX_BATCH, BatchingSink
from pipeline.sinks.pii import PiiPolicy
from pipeline.warehouses import Warehouse, scheme_list, warehouse_for

__all__ = ["SinkClass", "open_sink", "pii_policy", "sink_class"]


class SinkClass(Protocol):
    """How every warehouse sink class is built: its target (a path or a DSN), then the group."""

    def __call__(
        self,
        target: str,
        group: str,
        *,
        store: SchemaStore | None = ...,
        pii: PiiPolicy | None = ...,
        max_batch: int = ...,
    ) -> BatchingSink: ...


def pii_policy(settings: Settings) -> PiiPolicy:
    """The PII policy of WAREHOUSE_PII / WAREHOUSE_PII_KEY."""
    if settings.warehouse_pii == "hash":
        if settings.warehouse_pii_key is None:
            raise ConfigError("WAREHOUSE_PII_KEY: needed when WAREHOUSE_PII=hash")
        return PiiPolicy("hash", settings.warehouse_pii_key.get_secret_value().encode())
    return PiiPolicy("raw")


def sink_class(warehouse: Warehouse) -> SinkClass:
    """The sink class a registry entry names (imported now: only the warehouse in use loads)."""
    module, _, name = warehouse.sink.partition(":")
    cls = getattr(importlib.import_module(module), name)
    if not (isinstance(cls, type) and issubclass(cls, BatchingSink)):
        raise TypeError(f"{warehouse.sink} is not a BatchingSink")
    return cast(SinkClass, cls)


def open_sink(
    url: str,
    group: str,
    *,
    pii: PiiPolicy | None = None,
    store: SchemaStore | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> BatchingSink:
    """A sink for `url` (`pipeline.warehouses.WAREHOUSES` lists the schemes), not yet set up."""
    warehouse = warehouse_for(url)
    if warehouse is None:
        raise ConfigError(f"WAREHOUSE_URL: must start with {scheme_list()}")
    cls = sink_class(warehouse)
    return cls(warehouse.target_of(url), group, store=store, pii=pii, max_batch=max_batch)

"""Records to column batches: one list per column, de-duplicated by primary key, PII applied."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from pipeline import records
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.schema_ddl import TableSpec

__all__ = ["dedupe", "to_columns"]


def dedupe(spec: TableSpec, batch: Sequence[records.Record]) -> list[records.Record]:
    """One record per primary key: the last for upsert tables, the first for insert-or-ignore.

    A single `INSERT ... ON CONFLICT` statement may not touch the same key twice, and this is
    what the warehouse would end up with anyway had the records been written one by one.
    """
    keys = spec.primary_key
    chosen: dict[tuple[Any, ...], records.Record] = {}
    if spec.mode == "upsert":
        for record in batch:
            chosen[tuple(getattr(record, k) for k in keys)] = record
    else:
        for record in batch:
            chosen.setdefault(tuple(getattr(record, k) for k in keys), record)
    return list(chosen.values())


def to_columns(
    spec: TableSpec, batch: Sequence[records.Record], pii: PiiPolicy
) -> dict[str, list[Any]]:
    """Column lists ready for Arrow or COPY: arrays as lists, maps as JSON text.

    A column the record class lacks (a field added to the schema before the code) is NULL.
    """
    columns: dict[str, list[Any]] = {}
    for column in spec.columns:
        name = column.name
        values = [getattr(r, name, None) for r in batch]
        if column.kind == "array":
            values = [None if v is None else list(v) for v in values]
        elif column.kind == "map":
            values = [
                None if v is None else orjson.dumps(dict(v), option=orjson.OPT_SORT_KEYS).decode()
                for v in values
            ]
        columns[name] = values
    pii.apply(columns)
    return columns

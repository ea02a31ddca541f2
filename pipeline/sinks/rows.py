"""Records to column batches: one list per column, de-duplicated by primary key, PII applied.

Runs once per flushed row on the sink's hot path, so the per-record work is done by C-level
`attrgetter`/`zip`/`dict` calls rather than Python loops over every column of every record.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
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
    key = attrgetter(*spec.primary_key)
    keys = list(map(key, batch))
    if spec.mode == "upsert":
        return list(dict(zip(keys, batch, strict=True)).values())
    first = dict(zip(reversed(keys), reversed(batch), strict=True))
    return list(map(first.__getitem__, dict.fromkeys(keys)))


def _transpose(spec: TableSpec, batch: Sequence[records.Record]) -> dict[str, list[Any]]:
    """The batch's values per column its records have (all records of one class)."""
    first = batch[0]
    return {
        c.name: list(map(attrgetter(c.name), batch)) for c in spec.columns if hasattr(first, c.name)
    }


def to_columns(
    spec: TableSpec, batch: Sequence[records.Record], pii: PiiPolicy
) -> dict[str, list[Any]]:
    """Column lists ready for Arrow or COPY: arrays as lists, maps as JSON text.

    A column the record class lacks (a field added to the schema before the code) is NULL.
    """
    if not batch:
        return {c.name: [] for c in spec.columns}
    if len(set(map(type, batch))) == 1:
        transposed = _transpose(spec, batch)
    else:  # records of two versions of a class (a schema change mid-batch): one at a time
        transposed = {c.name: [getattr(r, c.name, None) for r in batch] for c in spec.columns}
    columns: dict[str, list[Any]] = {}
    for column in spec.columns:
        values = transposed.get(column.name)
        if values is None:
            values = [None] * len(batch)
        elif column.kind == "array":
            values = [None if v is None else list(v) for v in values]
        elif column.kind == "map":
            values = [
                None if v is None else orjson.dumps(dict(v), option=orjson.OPT_SORT_KEYS).decode()
                for v in values
            ]
        columns[column.name] = values
    pii.apply(columns)
    return columns

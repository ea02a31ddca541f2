"""Hand-built records and warehouse readers shared by the sink tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import records

T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


def lifecycle(i: int, **kw: Any) -> records.SmsLifecycle:
    fields: dict[str, Any] = {
        "id_sms_api": f"m{i}",
        "state": "SUBMITTED",
        "updated_at": T0 + timedelta(minutes=i),
        "login": "acme",
        "phone_number": f"+3361234{i:04d}",
        "requested_at": T0 + timedelta(minutes=i),
    }
    fields.update(kw)
    return records.SmsLifecycle(**fields)


def query(sink: Any, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` on a set-up DuckDB or PostgreSQL sink's connection."""
    return [tuple(r) for r in sink.conn.execute(sql).fetchall()]

"""The demo's closing summary, read from the warehouse (DuckDB) once the sink has caught up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DemoSummary", "read_summary"]


@dataclass(frozen=True)
class DemoSummary:
    """Figures of one demo run, as the warehouse holds them."""

    messages: int
    by_state: dict[str, int]
    delivered_pct: float | None
    click_through_pct: float | None
    p50_delivery_ms: float | None
    p95_delivery_ms: float | None
    optouts: int
    rejections_by_code: dict[str, int] = field(default_factory=dict)


def read_summary(duckdb_path: Path) -> DemoSummary:
    """Query the sink's tables (read-only: the sink has stopped and released the file)."""
    import duckdb

    con = duckdb.connect(str(duckdb_path), read_only=True)
    try:
        by_state = dict(
            con.execute("SELECT state, count(*) FROM sms_lifecycle GROUP BY state").fetchall()
        )
        total = sum(by_state.values())
        delivered = by_state.get("DELIVERED", 0)
        (clicked,) = con.execute(
            "SELECT count(*) FROM sms_lifecycle WHERE state = 'DELIVERED' AND click_count > 0"
        ).fetchone() or (0,)
        p50, p95 = con.execute(
            """
            SELECT quantile_cont(ms, 0.5), quantile_cont(ms, 0.95) FROM (
              SELECT epoch_ms(delivered_at) - epoch_ms(coalesce(sent_at, submitted_at)) AS ms
              FROM sms_lifecycle
              WHERE delivered_at IS NOT NULL AND coalesce(sent_at, submitted_at) IS NOT NULL
            ) WHERE ms >= 0
            """
        ).fetchone() or (None, None)
        (optouts,) = con.execute("SELECT count(*) FROM sms_optouts WHERE opted_out").fetchone() or (
            0,
        )
        rejections = dict(
            con.execute(
                """
                SELECT code, count(*) FROM (
                  SELECT unnest(error_codes) AS code FROM sms_send_results
                  WHERE outcome <> 'SUBMITTED'
                ) GROUP BY code ORDER BY count(*) DESC, code
                """
            ).fetchall()
        )
    finally:
        con.close()
    return DemoSummary(
        messages=total,
        by_state=by_state,
        delivered_pct=100.0 * delivered / total if total else None,
        click_through_pct=100.0 * clicked / delivered if delivered else None,
        p50_delivery_ms=p50,
        p95_delivery_ms=p95,
        optouts=int(optouts),
        rejections_by_code={str(k): int(v) for k, v in rejections.items()},
    )

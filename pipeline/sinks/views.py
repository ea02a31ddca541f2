"""Analytics views over the warehouse tables, one definition per SQL dialect.

Days are UTC days. Time-to-deliver is `delivered_at - sent_at` (falling back to `submitted_at`),
in milliseconds, as `pipeline.core.lifecycle.time_to_deliver_ms` and the metric windows define it;
negative differences (clock skew) are left out. Opt-outs per day count
the numbers whose *current* state is opted out, by the day of that opt-out (the table holds one
row per number). Overdue receipts are the messages still SUBMITTED or SENT whose
`overdue_since` is set (DELIVERY_RECEIPT_TIMEOUT_SECONDS passed with no final status), per login
and campaign, with the oldest deadline; a message whose receipt came late keeps the field but
is no longer waiting, so it is not counted.
"""

# ruff: noqa: S608  -- fixed SQL text, no outside input

from __future__ import annotations

from pipeline.sinks.schema_ddl import Dialect

__all__ = ["VIEW_NAMES", "view_sql"]

VIEW_NAMES = (
    "v_daily_delivery_rate",
    "v_click_through_rate",
    "v_time_to_deliver_by_login",
    "v_time_to_deliver_by_campaign",
    "v_optouts_daily",
    "v_missed_calls_daily",
    "v_overdue_receipts",
)


def _day(column: str) -> str:
    return f"CAST(({column}) AT TIME ZONE 'UTC' AS DATE)"


def _ms(later: str, earlier: str, dialect: Dialect) -> str:
    if dialect == "duckdb":
        return f"CAST(epoch_ms({later}) - epoch_ms({earlier}) AS DOUBLE)"
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) * 1000)::DOUBLE PRECISION"


def _pct(expr: str, q: float, dialect: Dialect) -> str:
    if dialect == "duckdb":
        return f"quantile_cont({expr}, {q})"
    return f"percentile_cont({q}) WITHIN GROUP (ORDER BY {expr})"


def _ratio(num: str, den: str) -> str:
    return f"CASE WHEN {den} = 0 THEN NULL ELSE CAST({num} AS DOUBLE PRECISION) / {den} END"


def view_sql(dialect: Dialect) -> list[str]:
    """CREATE OR REPLACE VIEW statements for every analytics view."""
    ttd = _ms("delivered_at", "COALESCE(sent_at, submitted_at)", dialect)
    campaign = "metadata ->> 'campaign'"
    submitted = "COUNT(*) FILTER (WHERE submitted_at IS NOT NULL)"
    delivered = "COUNT(*) FILTER (WHERE delivered_at IS NOT NULL)"
    clicked = "COUNT(*) FILTER (WHERE delivered_at IS NOT NULL AND click_count > 0)"
    timed = (
        "delivered_at IS NOT NULL AND COALESCE(sent_at, submitted_at) IS NOT NULL"
        " AND delivered_at >= COALESCE(sent_at, submitted_at)"
    )
    return [
        f"""CREATE OR REPLACE VIEW v_daily_delivery_rate AS
SELECT {_day("COALESCE(submitted_at, requested_at, updated_at)")} AS day, login,
       {submitted} AS submitted, {delivered} AS delivered,
       {_ratio(delivered, submitted)} AS delivery_rate
FROM sms_lifecycle GROUP BY 1, 2""",
        f"""CREATE OR REPLACE VIEW v_click_through_rate AS
SELECT {_day("COALESCE(submitted_at, requested_at, updated_at)")} AS day, login,
       {delivered} AS delivered, {clicked} AS clicked,
       {_ratio(clicked, delivered)} AS click_through_rate
FROM sms_lifecycle GROUP BY 1, 2""",
        f"""CREATE OR REPLACE VIEW v_time_to_deliver_by_login AS
SELECT login, COUNT(*) AS delivered,
       {_pct(ttd, 0.5, dialect)} AS p50_ms, {_pct(ttd, 0.95, dialect)} AS p95_ms
FROM sms_lifecycle WHERE {timed} GROUP BY 1""",
        f"""CREATE OR REPLACE VIEW v_time_to_deliver_by_campaign AS
SELECT {campaign} AS campaign, COUNT(*) AS delivered,
       {_pct(ttd, 0.5, dialect)} AS p50_ms, {_pct(ttd, 0.95, dialect)} AS p95_ms
FROM sms_lifecycle WHERE {timed} GROUP BY 1""",
        f"""CREATE OR REPLACE VIEW v_optouts_daily AS
SELECT {_day('"at"')} AS day, COUNT(*) AS optouts
FROM sms_optouts WHERE opted_out GROUP BY 1""",
        f"""CREATE OR REPLACE VIEW v_missed_calls_daily AS
SELECT {_day("COALESCE(call_time, received_at)")} AS day, COUNT(*) AS missed_calls
FROM callbacks_calls WHERE direction = 'MISSED' GROUP BY 1""",
        f"""CREATE OR REPLACE VIEW v_overdue_receipts AS
SELECT login, {campaign} AS campaign, COUNT(*) AS count, MIN(overdue_since) AS oldest
FROM sms_lifecycle WHERE overdue_since IS NOT NULL AND state IN ('SUBMITTED', 'SENT')
GROUP BY 1, 2""",
    ]

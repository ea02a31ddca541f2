"""Analytics views give the numbers computed independently from the same hand-built rows."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import records
from pipeline.sinks.base import BatchingSink
from pipeline.sinks.duckdb_sink import DuckDBSink
from tests.unit.sinks.helpers import T0, lifecycle, query


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (the usual continuous percentile)."""
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def dataset() -> list[records.Record]:
    out: list[records.Record] = []
    for i in range(40):
        day = T0 + timedelta(days=i % 2)
        submitted = day + timedelta(minutes=i)
        delivered = submitted + timedelta(seconds=3 + (i * 7) % 23) if i % 3 else None
        # overdue: still waiting (undelivered), or a late receipt (delivered, the field kept)
        overdue = (i % 5 and (i % 6 == 0 or i % 7 == 1)) or None
        out.append(
            lifecycle(
                i,
                login="acme" if i % 4 else "beta",
                requested_at=submitted - timedelta(seconds=1),
                submitted_at=submitted if i % 5 else None,
                sent_at=submitted + timedelta(milliseconds=400) if i % 2 else None,
                delivered_at=delivered,
                click_count=(i % 2) if delivered else 0,
                metadata={"campaign": "c1" if i < 25 else "c2"},
                state=("DELIVERED" if delivered else "SENT" if i % 2 else "SUBMITTED"),
                overdue_since=submitted + timedelta(hours=48, seconds=i) if overdue else None,
            )
        )
    for i in range(7):
        out.append(
            records.OptOut(f"+3361000{i:04d}", i != 3, "STOP", f"o{i}", T0 + timedelta(days=i % 3))
        )
    for i in range(9):
        direction = "MISSED" if i % 3 else "INCOMING"
        out.append(
            records.CallEvent(
                f"c{i}", direction, "+33612345678", T0, "{}", call_time=T0 + timedelta(days=i % 2)
            )
        )
    return out


def check_views(sink: BatchingSink) -> None:
    data = dataset()
    for offset, record in enumerate(data):
        sink.add("t", 0, offset, record)
    sink.flush()
    life = [r for r in data if isinstance(r, records.SmsLifecycle)]

    groups: dict[tuple[Any, str], list[records.SmsLifecycle]] = defaultdict(list)
    for r in life:
        anchor = r.submitted_at or r.requested_at or r.updated_at
        groups[(anchor.date(), r.login)].append(r)
    want_rate = {}
    want_ctr = {}
    for key, rows in groups.items():
        sub = sum(r.submitted_at is not None for r in rows)
        dlv = [r for r in rows if r.delivered_at is not None]
        clk = sum(r.click_count > 0 for r in dlv)
        want_rate[key] = (sub, len(dlv), len(dlv) / sub if sub else None)
        want_ctr[key] = (len(dlv), clk, clk / len(dlv) if dlv else None)
    got = query(
        sink, "SELECT day, login, submitted, delivered, delivery_rate FROM v_daily_delivery_rate"
    )
    assert {(d, lg): (s, dl, pytest.approx(r)) for d, lg, s, dl, r in got} == want_rate
    got = query(
        sink, "SELECT day, login, delivered, clicked, click_through_rate FROM v_click_through_rate"
    )
    assert {(d, lg): (dl, c, pytest.approx(r)) for d, lg, dl, c, r in got} == want_ctr

    def ttd(r: records.SmsLifecycle) -> float | None:
        start = r.sent_at or r.submitted_at  # the lifecycle's definition (core.lifecycle)
        if start is None or r.delivered_at is None:
            return None
        return (r.delivered_at - start).total_seconds() * 1000

    for view, key in (
        ("v_time_to_deliver_by_login", "login"),
        ("v_time_to_deliver_by_campaign", "campaign"),
    ):
        by: dict[str, list[float]] = defaultdict(list)
        for r in life:
            if (ms := ttd(r)) is not None:
                by[r.login if key == "login" else r.metadata["campaign"]].append(ms)
        got = query(sink, f"SELECT {key}, delivered, p50_ms, p95_ms FROM {view}")
        assert {k: (n, pytest.approx(p50), pytest.approx(p95)) for k, n, p50, p95 in got} == {
            k: (len(v), percentile(v, 0.5), percentile(v, 0.95)) for k, v in by.items()
        }

    optouts: dict[Any, int] = defaultdict(int)
    for r in data:
        if isinstance(r, records.OptOut) and r.opted_out:
            optouts[r.at.date()] += 1
    assert dict(query(sink, "SELECT day, optouts FROM v_optouts_daily")) == optouts

    missed: dict[Any, int] = defaultdict(int)
    for r in data:
        if isinstance(r, records.CallEvent) and r.direction == "MISSED":
            missed[(r.call_time or r.received_at).date()] += 1
    assert dict(query(sink, "SELECT day, missed_calls FROM v_missed_calls_daily")) == missed

    waiting: dict[tuple[str | None, str], list[Any]] = defaultdict(list)
    for r in life:
        if r.overdue_since is not None and r.state in ("SUBMITTED", "SENT"):
            waiting[(r.login, r.metadata["campaign"])].append(r.overdue_since)
    assert len(waiting) >= 3 and any(r.overdue_since and r.delivered_at for r in life)
    got = query(sink, "SELECT login, campaign, count, oldest FROM v_overdue_receipts")
    assert {(lg, c): (n, oldest) for lg, c, n, oldest in got} == {
        k: (len(v), min(v)) for k, v in waiting.items()
    }


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckDBSink]:
    sink = DuckDBSink(tmp_path / "v.duckdb", "g")
    sink.setup()
    yield sink
    sink.close()


def test_duckdb_views(duck: DuckDBSink) -> None:
    check_views(duck)

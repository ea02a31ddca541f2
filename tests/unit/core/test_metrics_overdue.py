"""`SmsMetricsWindow.overdue`: messages whose receipt became overdue, counted at `overdue_since`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.core.metrics import (
    MetricsFold,
    WindowKey,
    batch_metrics,
    batch_metrics_from_events,
    facts_from,
)
from pipeline.records import SendRequest, SendResult, SmsLifecycle, StatusCallback

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lifecycle(**kw: object) -> SmsLifecycle:
    values: dict[str, object] = {
        "id_sms_api": "m1",
        "state": "SENT",
        "updated_at": at(70),
        "login": "alice",
        "submitted_at": at(5),
    }
    values.update(kw)
    return SmsLifecycle(**values)  # type: ignore[arg-type]


def test_an_overdue_record_counts_once_in_the_window_of_its_deadline() -> None:
    record = lifecycle(overdue_since=at(65))
    [fact] = [f for f in facts_from(record) if f.kind == "overdue"]
    assert (fact.at, fact.owner) == (at(65), "sms:m1")
    windows = batch_metrics(facts_from(record))
    assert windows[WindowKey("1m", at(60), "alice")].overdue == 1
    assert windows[WindowKey("1m", at(60), "*")].overdue == 1
    assert windows[WindowKey("1m", at(0), "alice")].overdue == 0  # submitted there, not overdue


def test_a_late_receipt_keeps_the_count_and_a_record_without_the_field_has_none() -> None:
    fold = MetricsFold()
    fold.feed(lifecycle())
    fold.feed(lifecycle(overdue_since=at(65)))
    fold.feed(lifecycle(state="DELIVERED", delivered_at=at(90), overdue_since=at(65)))
    records = fold.records()
    assert records[WindowKey("1m", at(60), "*")].overdue == 1
    assert records[WindowKey("1m", at(60), "*")].delivered == 1  # the late receipt counts too
    assert records[WindowKey("1m", at(60), "alice")].overdue == 1
    assert sum(r.overdue for r in batch_metrics(facts_from(lifecycle())).values()) == 0


def test_batch_metrics_from_events_count_overdue_as_of_now() -> None:
    events = [
        SendRequest("m1", "alice", "+33612345678", "hi", at(0)),
        SendResult("m1", "alice", "+33612345678", "SUBMITTED", at(1), sent_time=at(1)),
        SendRequest("m2", "alice", "+33612345679", "hi", at(0)),
        SendResult("m2", "alice", "+33612345679", "SUBMITTED", at(1), sent_time=at(1)),
        StatusCallback("s2", "+33612345679", "received", at(3), "{}", id_sms_api="m2"),
    ]
    before = batch_metrics_from_events(events, now=at(5), receipt_timeout_seconds=10)
    after = batch_metrics_from_events(events, now=at(20), receipt_timeout_seconds=10)
    without = batch_metrics_from_events(events)
    key = WindowKey("1m", at(0), "*")
    assert (before[key].overdue, after[key].overdue, without[key].overdue) == (0, 1, 0)

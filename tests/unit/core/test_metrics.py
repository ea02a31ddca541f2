"""Metric windows: alignment, facts, and stream == batch under reordering and duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.lifecycle import LifecycleState, apply, to_record
from pipeline.core.metrics import (
    WINDOWS,
    MetricFact,
    MetricsFold,
    WindowAccumulator,
    WindowKey,
    batch_metrics,
    batch_metrics_from_events,
    facts_from,
    is_late,
    window_closed,
    window_keys,
    window_start,
)
from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    OptOut,
    SendRequest,
    SendResult,
    SmsMetricsWindow,
    StatusCallback,
)

from .strategies import PHONES, T0, all_events, reshuffled

MESSAGE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


def stream(events: list[object], fold: MetricsFold | None = None) -> MetricsFold:
    """What the agents do: correlate into lifecycle records, feed records and events to the fold."""
    fold = fold or MetricsFold()
    states: dict[str, LifecycleState] = {}
    for ev in events:
        if isinstance(ev, MESSAGE_TYPES):
            mid = ev.id_sms_api
            assert mid is not None
            states[mid] = apply(states.get(mid), ev)
            fold.feed(to_record(states[mid], updated_at=states[mid].last_event_at))
        else:
            fold.feed(ev)  # type: ignore[arg-type]
    return fold


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@given(st.datetimes(timezones=st.just(UTC)), st.sampled_from(sorted(WINDOWS.values())))
def test_window_start_is_epoch_aligned(ts: datetime, size_s: int) -> None:
    start = window_start(ts, size_s)
    assert start <= ts < start + timedelta(seconds=size_s)
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
    assert (start - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() % size_s == 0


def test_window_key_encoding_round_trips_odd_logins() -> None:
    key = WindowKey("1h", datetime(2024, 1, 1, 10, tzinfo=UTC), "a|b@x")
    assert WindowKey.decode(key.encode()) == key


@given(all_events.flatmap(lambda evs: st.tuples(st.just(evs), reshuffled(evs))))
def test_stream_in_any_order_with_duplicates_equals_batch(
    pair: tuple[list[object], list[object]],
) -> None:
    events, shuffled = pair
    expected = batch_metrics_from_events(events)  # type: ignore[arg-type]
    assert batch_metrics_from_events(shuffled) == expected  # type: ignore[arg-type]
    fold = stream(shuffled)
    assert fold.records() == expected
    # What the fold keeps is plain JSON, as a Faust table needs.
    json.dumps(dict(fold.owners))
    json.dumps(dict(fold.windows))


@given(all_events, st.data())
def test_replaying_a_suffix_of_lifecycle_records_changes_nothing(
    events: list[object], data: st.DataObject
) -> None:
    # At-least-once delivery of sms.lifecycle: after a crash, a suffix is consumed again.
    states: dict[str, LifecycleState] = {}
    feed: list[object] = []
    for ev in events:
        if isinstance(ev, MESSAGE_TYPES):
            mid = ev.id_sms_api
            assert mid is not None
            states[mid] = apply(states.get(mid), ev)
            feed.append(to_record(states[mid]))
        else:
            feed.append(ev)
    cut = data.draw(st.integers(0, len(feed)))
    fold = MetricsFold()
    for rec in feed + feed[cut:]:
        fold.feed(rec)  # type: ignore[arg-type]
    assert fold.records() == batch_metrics_from_events(events)  # type: ignore[arg-type]


@given(all_events)
def test_every_fact_counts_in_its_login_and_in_all(events: list[object]) -> None:
    windows = batch_metrics_from_events(events)  # type: ignore[arg-type]
    fields = ("requested", "submitted", "rejected", "delivered", "clicks", "incoming_sms")
    for key, rec in windows.items():
        if key.login != "*":
            continue
        per_login = [r for k, r in windows.items() if k[:2] == key[:2] and k.login != "*"]
        for name in fields:
            assert getattr(rec, name) >= sum(getattr(r, name) for r in per_login)


def test_a_worked_window() -> None:
    minute = window_start(at(0), 60)
    events: list[object] = []
    for i, mid in enumerate(["a", "b", "c"]):
        events.append(SendRequest(mid, "alice", PHONES[0], "hi", requested_at=at(i)))
    events += [
        SendResult("a", "alice", PHONES[0], "SUBMITTED", completed_at=at(5)),
        SendResult("b", "alice", PHONES[0], "SUBMITTED", completed_at=at(6)),
        SendResult("c", "alice", PHONES[0], "REJECTED", completed_at=at(7), error_codes=("#005",)),
        StatusCallback("s1", PHONES[0], "received", at(15), "{}", id_sms_api="a"),
        ClickCallback("k1", PHONES[0], at(20), "{}", id_sms_api="a"),
        ClickCallback("k2", PHONES[0], at(21), "{}", id_sms_api="a"),
        ClickCallback("k2", PHONES[0], at(22), "{}", id_sms_api="a"),  # same click, again
        IncomingSms("i1", PHONES[0], "STOP", at(30), "{}", device_identification="alice"),
        OptOut(PHONES[0], True, "incoming_sms", "o1", at(31), login="alice"),
        OptOut(PHONES[1], False, "incoming_sms", "o2", at(32), login="alice"),
        CallEvent("x1", "MISSED", PHONES[0], at(33), "{}"),
        CallEvent("x2", "INCOMING", PHONES[0], at(34), "{}"),
    ]
    windows = batch_metrics_from_events(events)  # type: ignore[arg-type]
    alice = windows[WindowKey("1m", minute, "alice")]
    assert (alice.requested, alice.submitted, alice.rejected, alice.delivered) == (3, 2, 1, 1)
    assert (alice.clicks, alice.unique_clicks) == (2, 1)
    assert (alice.incoming_sms, alice.optouts, alice.calls_missed) == (1, 1, 0)
    assert alice.delivery_rate == pytest.approx(1 / 2)
    assert alice.click_through_rate == pytest.approx(1.0)
    assert alice.p50_delivery_ms is not None and abs(alice.p50_delivery_ms - 10_000) <= 100
    assert alice.window_end == minute + timedelta(minutes=1)
    everyone = windows[WindowKey("1m", minute, "*")]
    assert everyone.calls_missed == 1  # a call without device lands in "*" only
    assert everyone.requested == 3
    hour = windows[WindowKey("1h", window_start(at(0), 3600), "alice")]
    assert hour.requested == 3
    assert stream(events).records() == windows


def test_rates_are_none_without_a_divisor() -> None:
    rec = WindowAccumulator(requested=2).to_record(at(0), at(60), "*", "1m")
    assert rec.delivery_rate is None and rec.click_through_rate is None
    assert rec.p50_delivery_ms is None


def test_accumulator_round_trips_and_retracts() -> None:
    acc = WindowAccumulator()
    facts = [
        MetricFact("delivered", "delivered:a", "alice", at(1), value_ms=1200, id_sms_api="a"),
        MetricFact("click", "click:a", "alice", at(2), id_sms_api="a", count=3),
        MetricFact("submitted", "submitted:a", "alice", at(0), id_sms_api="a"),
    ]
    for f in facts:
        acc.add(f)
    again = WindowAccumulator.from_dict(json.loads(json.dumps(acc.to_dict())))
    assert again == acc
    assert (again.clicks, again.unique_clicks, again.delivered) == (3, 1, 1)
    for f in facts:
        again.remove(f)
    assert again.is_empty()


def test_facts_of_a_lifecycle_move_when_the_record_changes() -> None:
    fold = MetricsFold()
    first = StatusCallback("s1", PHONES[0], "received", at(30), "{}", id_sms_api="a")
    state = apply(None, first)
    fold.feed(to_record(state))
    assert fold.records()[WindowKey("1m", window_start(at(30), 60), "*")].delivered == 1
    # An earlier receipt of the same message arrives later: the delivery moves a minute back.
    state = apply(state, StatusCallback("s2", PHONES[0], "received", at(-40), "{}", id_sms_api="a"))
    fold.feed(to_record(state))
    records = fold.records()
    assert WindowKey("1m", window_start(at(30), 60), "*") not in records
    assert records[WindowKey("1m", window_start(at(-40), 60), "*")].delivered == 1


def test_facts_for_closed_windows_are_dropped_and_counted() -> None:
    fold = MetricsFold(grace_s=600)
    old = IncomingSms("i1", PHONES[0], "hi", at(0), "{}")
    # 1m window [0, 60) + 600 s grace closes at 660 s; the 1h window is still open.
    result = fold.feed(old, watermark=at(700))
    assert result.too_late == 1
    keys = set(fold.records())
    assert WindowKey("1m", window_start(at(0), 60), "*") not in keys
    assert WindowKey("1h", window_start(at(0), 3600), "*") in keys
    within = fold.feed(IncomingSms("i2", PHONES[0], "hi", at(60), "{}"), watermark=at(700))
    assert within.too_late == 0
    assert fold.records()[WindowKey("1m", window_start(at(60), 60), "*")].incoming_sms == 1


def test_expire_forgets_closed_windows_and_their_owners() -> None:
    fold = stream([IncomingSms("i1", PHONES[0], "hi", at(0), "{}")])
    assert fold.owners
    far = at(0) + timedelta(hours=3)
    gone = fold.expire(far)
    assert len(gone) == 2  # the 1m and the 1h window of "*"
    assert not fold.windows and not fold.owners


def test_late_and_closed_helpers_agree() -> None:
    start = window_start(at(0), 60)
    assert not window_closed(start, 60, start + timedelta(seconds=660), 600)
    assert window_closed(start, 60, start + timedelta(seconds=661), 600)
    assert is_late(start, start + timedelta(seconds=661), 600)
    assert not is_late(start, start + timedelta(seconds=661), 600, size_s=3600)


def test_fact_lands_in_login_and_all_windows_per_size() -> None:
    fact = MetricFact("incoming_sms", "incoming_sms:e", "alice", at(0))
    keys = window_keys(fact)
    assert {(k.window, k.login) for k in keys} == {
        ("1m", "alice"),
        ("1m", "*"),
        ("1h", "alice"),
        ("1h", "*"),
    }
    anonymous = MetricFact("incoming_sms", "incoming_sms:e", None, at(0))
    assert {k.login for k in window_keys(anonymous)} == {"*"}


def test_batch_counts_a_repeated_fact_once() -> None:
    early = MetricFact("optout", "optout:o", "alice", at(0))
    late = MetricFact("optout", "optout:o", "alice", at(120))
    windows = batch_metrics([late, early, late])
    minutes = {k.start: r for k, r in windows.items() if k.window == "1m" and k.login == "*"}
    assert list(minutes) == [window_start(at(0), 60)]
    assert isinstance(minutes[window_start(at(0), 60)], SmsMetricsWindow)
    assert minutes[window_start(at(0), 60)].optouts == 1


def test_opt_in_and_answered_calls_state_no_fact() -> None:
    assert facts_from(OptOut(PHONES[0], False, "sms", "o", at(0))) == []
    assert facts_from(CallEvent("c", "OUTGOING", PHONES[0], at(0), "{}")) == []

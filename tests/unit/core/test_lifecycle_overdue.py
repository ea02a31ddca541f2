"""Receipts that never came: `overdue_since` as a pure function of the events and a "now"."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.core.lifecycle import (
    LifecycleState,
    apply,
    batch_lifecycles,
    event_time,
    is_overdue,
    overdue_record,
    overdue_since,
    receipt_deadline,
    to_record,
)
from pipeline.records import ClickCallback, SendRequest, SendResult, StatusCallback

from .strategies import IDS, LOGINS, PHONES, T0, message_events, offsets, opt_times, reshuffled

TIMEOUT = 3600.0  # an hour, in seconds


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(t: float = 0) -> SendRequest:
    return SendRequest("m1", "alice", PHONES[0], "hi", requested_at=at(t))


def result(t: float = 10, outcome: str = "SUBMITTED", **kw: object) -> SendResult:
    return SendResult("m1", "alice", PHONES[0], outcome, completed_at=at(t), **kw)  # type: ignore[arg-type]


def status(name: str, received: float, date: float | None = None) -> StatusCallback:
    return StatusCallback(
        event_id=f"{name}{received}",
        phone_number=PHONES[0],
        status=name,
        received_at=at(received),
        raw="{}",
        id_sms_api="m1",
        date_status=None if date is None else at(date),
    )


def fold(*events: object) -> LifecycleState:
    state = None
    for event in events:
        state = apply(state, event)  # type: ignore[arg-type]
    assert state is not None
    return state


def record(state: LifecycleState, now: float):  # type: ignore[no-untyped-def]
    return to_record(state, now=at(now), receipt_timeout_seconds=TIMEOUT)


def test_submitted_becomes_overdue_exactly_at_submitted_at_plus_the_timeout() -> None:
    state = fold(request(), result(t=10))
    assert receipt_deadline(state, TIMEOUT) == at(10 + TIMEOUT)
    assert record(state, 10 + TIMEOUT - 0.001).overdue_since is None
    rec = record(state, 10 + TIMEOUT)
    assert (rec.state, rec.overdue_since) == ("SUBMITTED", at(10 + TIMEOUT))
    assert rec.updated_at == at(10 + TIMEOUT)  # the record changed then, not at the last event
    assert is_overdue(state, at(10 + TIMEOUT), TIMEOUT)


def test_sent_without_a_final_status_is_overdue_too() -> None:
    state = fold(request(), result(t=10), status("sent", 20))
    rec = record(state, 10 + TIMEOUT + 5)
    assert (rec.state, rec.overdue_since) == ("SENT", at(10 + TIMEOUT))


def test_ardarys_sent_time_is_the_submission_time_and_scheduled_for_postpones_the_deadline() -> (
    None
):
    state = fold(result(t=10, sent_time=at(8)))
    assert receipt_deadline(state, TIMEOUT) == at(8 + TIMEOUT)
    # Ardary was asked to send it two days later: the receipt is due a timeout after that
    scheduled = fold(result(t=10, scheduled_for=at(2 * 86400)))
    assert receipt_deadline(scheduled, TIMEOUT) == at(2 * 86400 + TIMEOUT)
    assert record(scheduled, 10 + TIMEOUT * 2).overdue_since is None


def test_a_receipt_in_time_means_never_overdue() -> None:
    for final in ("received", "failed"):
        state = fold(request(), result(t=10), status(final, 100))
        assert record(state, 10 + 10 * TIMEOUT).overdue_since is None
        assert not is_overdue(state, at(10 + 10 * TIMEOUT), TIMEOUT)


def test_a_late_receipt_moves_the_state_on_and_keeps_the_field() -> None:
    state = fold(request(), result(t=10))
    before = record(state, 10 + TIMEOUT + 60)
    late = apply(state, status("received", 10 + TIMEOUT + 120, date=30))
    after = record(late, 10 + TIMEOUT + 180)
    assert (before.state, after.state) == ("SUBMITTED", "DELIVERED")
    assert after.overdue_since == before.overdue_since == at(10 + TIMEOUT)
    assert after.updated_at == at(10 + TIMEOUT + 120)
    # overdue is judged by when the receipt reached us, not by Ardary's date_status (30 s)
    assert not is_overdue(late, at(10 + TIMEOUT + 180), TIMEOUT)  # no longer waiting


def test_messages_ardary_did_not_accept_are_never_overdue() -> None:
    for state in (fold(request()), fold(request(), result(outcome="REJECTED"))):
        assert receipt_deadline(state, TIMEOUT) is None
        assert record(state, 100 * TIMEOUT).overdue_since is None


def test_without_a_now_records_are_what_they_were() -> None:
    state = fold(request(), result(t=10), status("sent", 20))
    plain = to_record(state)
    assert plain.overdue_since is None and plain.updated_at == at(20)
    assert replace(record(state, 10 + TIMEOUT), overdue_since=None, updated_at=at(20)) == plain
    assert batch_lifecycles([request(), result(t=10)])["m1"].overdue_since is None


def test_the_timer_record_is_emitted_once_per_deadline() -> None:
    state = fold(request(), result(t=10))
    deadline = 10 + TIMEOUT
    assert overdue_record(state, at(deadline - 1), TIMEOUT) is None
    first = overdue_record(state, at(deadline + 5), TIMEOUT, since=at(deadline - 1))
    assert first is not None and first.overdue_since == at(deadline)
    # the next run of the timer: the deadline is behind `since`, nothing new
    assert overdue_record(state, at(deadline + 10), TIMEOUT, since=at(deadline + 5)) is None
    # a timer starting afresh (since=None) emits it again: the same record, harmless
    assert overdue_record(state, at(deadline + 10), TIMEOUT) == replace(first)
    # nothing for a message whose receipt came, even late
    late = apply(state, status("received", deadline + 7))
    assert overdue_record(late, at(deadline + 10), TIMEOUT) is None


def test_state_round_trip_keeps_the_new_facts_and_old_states_still_load() -> None:
    state = fold(request(), result(t=10, scheduled_for=at(50)), status("received", 70))
    assert state.final_seen_at == at(70) and state.result is not None
    assert state.result.scheduled_for == at(50)
    assert LifecycleState.from_dict(state.to_dict()) == state
    old = state.to_dict()
    del old["final_seen_at"], old["result"]["scheduled_for"]
    loaded = LifecycleState.from_dict(old)
    # saved before final_seen_at existed: the receipt's own time stands in, so a message
    # delivered before the upgrade never turns overdue after it
    assert loaded.final_seen_at == loaded.delivered_at is not None
    assert loaded.result is not None and loaded.result.scheduled_for is None
    assert not is_overdue(loaded, at(10 * TIMEOUT), TIMEOUT)


# --- properties: order independence, stream == batch, the field is kept -----------------------


@st.composite
def results_with_schedule(draw: st.DrawFn, mid: str) -> SendResult:
    return SendResult(
        id_sms_api=mid,
        login=draw(st.sampled_from(LOGINS)),
        phone_number=draw(st.sampled_from(PHONES)),
        outcome=draw(st.sampled_from(["SUBMITTED", "SUBMITTED", "REJECTED", "FAILED"])),
        completed_at=draw(offsets),
        sent_time=draw(opt_times),
        scheduled_for=draw(opt_times),
    )


def events_of(mid: str) -> st.SearchStrategy[object]:
    return st.one_of(message_events(mid), results_with_schedule(mid))


histories = st.lists(st.sampled_from(IDS).flatmap(events_of), min_size=1, max_size=25)
nows = st.integers(0, 5 * 3600).map(at)
timeouts = st.sampled_from([60.0, 600.0, 3600.0])


@settings(max_examples=120, deadline=None)
@given(
    histories.flatmap(lambda evs: st.tuples(st.just(evs), reshuffled(evs))),
    nows,
    timeouts,
)
def test_order_and_duplicates_do_not_change_overdue(
    pair: tuple[list[object], list[object]], now: datetime, timeout: float
) -> None:
    events, shuffled = pair
    a = batch_lifecycles(events, now=now, receipt_timeout_seconds=timeout)  # type: ignore[arg-type]
    b = batch_lifecycles(shuffled, now=now, receipt_timeout_seconds=timeout)  # type: ignore[arg-type]
    assert a == b


@settings(max_examples=120, deadline=None)
@given(histories, nows, timeouts)
def test_stream_equals_batch_for_the_same_now(
    events: list[object], now: datetime, timeout: float
) -> None:
    states: dict[str, LifecycleState] = {}
    for event in events:
        mid = event.id_sms_api  # type: ignore[attr-defined]
        states[mid] = apply(states.get(mid), event)  # type: ignore[arg-type]
    stream = {
        mid: to_record(s, now=now, receipt_timeout_seconds=timeout) for mid, s in states.items()
    }
    assert stream == batch_lifecycles(events, now=now, receipt_timeout_seconds=timeout)  # type: ignore[arg-type]


@settings(max_examples=120, deadline=None)
@given(histories, histories, nows, st.integers(0, 3600), timeouts)
def test_once_overdue_later_events_and_later_nows_keep_the_field(
    first: list[object], later: list[object], now: datetime, step: int, timeout: float
) -> None:
    states: dict[str, LifecycleState] = {}
    for event in first:
        mid = event.id_sms_api  # type: ignore[attr-defined]
        states[mid] = apply(states.get(mid), event)  # type: ignore[arg-type]
    flagged = {
        mid: since
        for mid, s in states.items()
        if (since := overdue_since(s, now, timeout)) is not None
    }
    # callbacks (receipts, clicks) that reach us after `now`, as they would after the timer ran;
    # a second SendResult for the same id is not a receipt and may move the deadline
    shift = now - T0 + timedelta(seconds=1)
    for event in later:
        if not isinstance(event, StatusCallback | ClickCallback):
            continue
        moved = replace(event, received_at=event.received_at + shift)
        assert event_time(moved) > now
        if moved.id_sms_api in states:
            states[moved.id_sms_api] = apply(states[moved.id_sms_api], moved)
    later_now = now + timedelta(seconds=step)
    for mid, since in flagged.items():
        assert overdue_since(states[mid], later_now, timeout) == since

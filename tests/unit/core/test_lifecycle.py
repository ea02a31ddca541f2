"""The lifecycle merge is order-independent and derives states and times as documented."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.lifecycle import (
    MAX_CLICK_IDS,
    LifecycleState,
    apply,
    batch_lifecycles,
    expired,
    is_final,
    time_to_deliver_ms,
    to_record,
)
from pipeline.records import ClickCallback, SendRequest, SendResult, StatusCallback

from .strategies import PHONES, T0, lifecycle_events, reshuffled


def fold(events: list[object]) -> dict[str, LifecycleState]:
    states: dict[str, LifecycleState] = {}
    for ev in events:
        mid = ev.id_sms_api  # type: ignore[attr-defined]
        states[mid] = apply(states.get(mid), ev)
    return states


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def request(mid: str = "m1", t: float = 0, login: str = "alice") -> SendRequest:
    return SendRequest(mid, login, PHONES[0], "hi", requested_at=at(t))


def result(mid: str = "m1", t: float = 1, outcome: str = "SUBMITTED", **kw: object) -> SendResult:
    return SendResult(mid, "alice", PHONES[0], outcome, completed_at=at(t), **kw)


def status(
    status: str, t: float, mid: str = "m1", date: float | None = None, eid: str | None = None
) -> StatusCallback:
    return StatusCallback(
        event_id=eid or f"{status}{t}",
        phone_number=PHONES[0],
        status=status,
        received_at=at(t),
        raw="{}",
        id_sms_api=mid,
        date_status=None if date is None else at(date),
    )


def click(eid: str, t: float, mid: str = "m1", date: float | None = None) -> ClickCallback:
    return ClickCallback(
        event_id=eid,
        phone_number=PHONES[1],
        received_at=at(t),
        raw="{}",
        id_sms_api=mid,
        date=None if date is None else at(date),
    )


@given(lifecycle_events.flatmap(lambda evs: st.tuples(st.just(evs), reshuffled(evs))))
def test_any_order_and_duplicates_give_the_same_records(
    pair: tuple[list[object], list[object]],
) -> None:
    events, shuffled = pair
    assert fold(shuffled) == fold(events)
    assert batch_lifecycles(shuffled) == batch_lifecycles(events)


@given(lifecycle_events)
def test_stream_equals_batch(events: list[object]) -> None:
    streamed = {
        mid: to_record(st_, updated_at=st_.last_event_at) for mid, st_ in fold(events).items()
    }
    assert streamed == batch_lifecycles(events)


@given(lifecycle_events)
def test_applying_an_event_twice_changes_nothing(events: list[object]) -> None:
    states = fold(events)
    for ev in events:
        mid = ev.id_sms_api  # type: ignore[attr-defined]
        assert apply(states[mid], ev) == states[mid]


@given(lifecycle_events)
def test_state_round_trips_through_json(events: list[object]) -> None:
    for state in fold(events).values():
        again = LifecycleState.from_dict(json.loads(json.dumps(state.to_dict())))
        assert again == state
        assert to_record(again) == to_record(state)


@given(lifecycle_events)
def test_updated_at_is_the_latest_event_of_the_message(events: list[object]) -> None:
    for mid, rec in batch_lifecycles(events).items():
        own = [e for e in events if e.id_sms_api == mid]  # type: ignore[attr-defined]
        times = [
            e.requested_at
            if isinstance(e, SendRequest)
            else e.completed_at
            if isinstance(e, SendResult)
            else e.received_at  # type: ignore[attr-defined]
            for e in own
        ]
        assert rec.updated_at == max(times)


def test_happy_path_uses_ardary_times_when_given() -> None:
    rec = to_record(
        fold(
            [
                request(t=0),
                result(t=2, sent_time=at(3), sms_per_message=2),
                status("sent", t=10, date=5),
                status("received", t=20, date=8),
            ]
        )["m1"]
    )
    assert rec.state == "DELIVERED"
    assert rec.requested_at == at(0)
    assert rec.submitted_at == at(3)
    assert rec.sent_at == at(5)
    assert rec.delivered_at == at(8)
    assert rec.sms_per_message == 2
    assert rec.login == "alice"
    assert time_to_deliver_ms(rec) == 3000
    assert is_final(rec)


def test_status_before_request_and_result_converges() -> None:
    events = [status("received", t=30), status("sent", t=20), result(t=10), request(t=5)]
    rec = batch_lifecycles(events)["m1"]
    assert rec.state == "DELIVERED"
    assert rec.sent_at == at(20)  # received_at is used when date_status is absent
    assert rec.delivered_at == at(30)
    assert rec.updated_at == at(30)


def test_received_without_send_result_is_delivered() -> None:
    rec = batch_lifecycles([status("received", t=4)])["m1"]
    assert rec.state == "DELIVERED"
    assert rec.submitted_at is None
    assert time_to_deliver_ms(rec) is None


def test_orphan_click_yields_a_record_with_what_is_known() -> None:
    rec = batch_lifecycles([click("c1", t=9, date=7), click("c1", t=12)])["m1"]
    assert rec.login is None
    assert rec.phone_number == PHONES[1]
    assert rec.requested_at is None
    assert rec.first_click_at == at(7)
    assert rec.click_count == 1  # one event_id seen twice


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([request()], "REQUESTED"),
        ([request(), result(outcome="SUBMITTED")], "SUBMITTED"),
        ([request(), result(outcome="REJECTED", error_codes=("#005",))], "REJECTED"),
        ([request(), result(outcome="SUPPRESSED")], "SUPPRESSED"),
        ([request(), result(outcome="FAILED")], "FAILED"),
        ([request(), result(), status("sent", 3)], "SENT"),
        ([request(), result(), status("sent", 3), status("undelivered", 4)], "FAILED"),
        ([request(), result(), status("failed", 3), status("received", 4)], "DELIVERED"),
        ([request(), result(), status("queued", 3)], "SUBMITTED"),
        ([request(), result(), status("Received", 3)], "DELIVERED"),
    ],
)
def test_state_precedence(events: list[object], expected: str) -> None:
    assert batch_lifecycles(events)["m1"].state == expected


def test_submitted_result_wins_over_another_in_any_order() -> None:
    failed = result(t=9, outcome="FAILED", error_codes=("#009",))
    ok = result(t=2, outcome="SUBMITTED")
    for events in ([failed, ok], [ok, failed]):
        rec = batch_lifecycles([request(), *events])["m1"]
        assert rec.state == "SUBMITTED"
        assert rec.error_codes == ()
        assert rec.submitted_at == at(2)


def test_earliest_request_wins() -> None:
    late, early = request(t=50, login="bob"), request(t=1, login="alice")
    for events in ([late, early], [early, late]):
        rec = batch_lifecycles(events)["m1"]
        assert rec.requested_at == at(1)
        assert rec.login == "alice"


def test_click_ids_are_capped_the_same_way_in_any_order() -> None:
    clicks = [click(f"c{i:05d}", t=i % 50) for i in range(MAX_CLICK_IDS + 25)]
    forward = fold(clicks)["m1"]
    backward = fold(list(reversed(clicks)))["m1"]
    assert forward == backward
    assert to_record(forward).click_count == MAX_CLICK_IDS
    assert to_record(fold(clicks + clicks[:10])["m1"]).click_count == MAX_CLICK_IDS
    assert forward.first_click_at == at(0)


def test_time_to_deliver_is_none_when_negative() -> None:
    rec = batch_lifecycles([status("sent", t=10), status("received", t=5)])["m1"]
    assert rec.delivered_at is not None and rec.sent_at is not None
    assert rec.delivered_at < rec.sent_at
    assert time_to_deliver_ms(rec) is None


def test_time_to_deliver_falls_back_to_submitted_at() -> None:
    rec = batch_lifecycles([result(t=1), status("received", t=4)])["m1"]
    assert time_to_deliver_ms(rec) == 3000


def test_expired_follows_the_latest_event() -> None:
    state = fold([request(t=0), status("sent", t=100)])["m1"]
    assert not expired(state, at(100 + 60), ttl_seconds=120)
    assert expired(state, at(100 + 121), ttl_seconds=120)


def test_apply_refuses_uncorrelatable_events() -> None:
    no_id = ClickCallback("c", PHONES[0], at(0), "{}", id_sms_api=None)
    with pytest.raises(ValueError):
        apply(None, no_id)
    with pytest.raises(ValueError):
        apply(fold([request("m1")])["m1"], request("m2"))
    assert batch_lifecycles([no_id, request("m2")]).keys() == {"m2"}

"""Window policy and watermarks: when a window closes, and the owner a record speaks for."""

from __future__ import annotations

from datetime import timedelta

from pipeline.core.metrics import (
    MetricFact,
    OwnerUpdate,
    Watermarks,
    WindowKey,
    WindowPolicy,
    owner_update,
    window_start,
)
from pipeline.records import CallEvent, IncomingSms, OptOut, SmsLifecycle

from .strategies import PHONES, T0

POLICY = WindowPolicy(grace_s=600)


def test_policy_closes_a_window_after_its_end_plus_grace_and_never_without_a_watermark() -> None:
    key = WindowKey("1m", window_start(T0, 60), "*")
    end = POLICY.end(key)
    assert end == key.start + timedelta(minutes=1)
    assert not POLICY.closed(key, None)
    assert not POLICY.closed(key, end + timedelta(seconds=600))
    assert POLICY.closed(key, end + timedelta(seconds=601))


def test_all_closed_needs_every_window_of_every_fact() -> None:
    key_start = window_start(T0, 3600)
    fact = MetricFact("optout", "optout:o", "alice", key_start)
    after_minute = key_start + timedelta(seconds=60 + 601)
    after_hour = key_start + timedelta(seconds=3600 + 601)
    assert not POLICY.all_closed([fact], after_minute)  # its 1h windows are open
    assert POLICY.all_closed([fact], after_hour)
    assert not POLICY.all_closed([fact], None)


def test_watermarks_never_move_back_and_are_capped_by_the_clock() -> None:
    now = T0 + timedelta(hours=1)
    marks = Watermarks(clock=lambda: now)
    assert marks.now(0) is None and marks.largest(0) is None
    marks.advance(0, T0)
    marks.advance(0, T0 - timedelta(minutes=5))
    assert marks.now(0) == T0 and marks.largest(0) == T0
    future = now + timedelta(days=365)  # one bogus timestamp
    marks.advance(0, future)
    assert marks.largest(0) == future and marks.now(0) == now
    assert marks.now(1) is None  # per partition


def test_owner_update_names_the_owner_and_whether_facts_replace() -> None:
    lifecycle = SmsLifecycle("m1", "REQUESTED", T0, "alice", requested_at=T0)
    update = owner_update(lifecycle)
    assert update is not None and (update.owner, update.replace) == ("sms:m1", True)
    assert [f.kind for f in update.facts] == ["requested"]
    # a lifecycle without any fact still speaks for its message: its facts become none
    assert owner_update(SmsLifecycle("m1", "REQUESTED", T0)) == OwnerUpdate("sms:m1", [], True)
    incoming = owner_update(IncomingSms("i1", PHONES[0], "hi", T0, "{}"))
    assert incoming is not None and (incoming.owner, incoming.replace) == (
        "event:incoming_sms:i1",
        False,
    )
    assert owner_update(OptOut(PHONES[0], False, "sms", "o1", T0)) is None
    assert owner_update(CallEvent("c1", "OUTGOING", PHONES[0], T0, "{}")) is None

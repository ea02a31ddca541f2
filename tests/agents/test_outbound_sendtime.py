"""Sending windows in the outbound agent: what intake and the Ardary call do with a marketing
message's send time, on a fixed clock, and what Ardary receives (httpx.MockTransport)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pipeline.agents.liveness import Telemetry
from pipeline.agents.outbound.calls import ArdaryCalls
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.sendtime import SendTimes
from pipeline.core.ratelimit import SendGate
from pipeline.core.sending import NO_SENDING_WINDOW, BatchKey, Prepared, Refusal, check_request
from pipeline.records import SendRequest
from pipeline.settings import Settings

FR = "+33612345678"
RU_MOBILE = "+79161234567"  # 16 zones, UTC+2 to UTC+12
SUNDAY_NOON = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)  # 12:00 in Paris: FR is closed on Sundays
MONDAY_8 = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # 08:00 in Paris
TUESDAY_NOON = datetime(2026, 3, 3, 11, 0, tzinfo=UTC)


def _settings(**kw: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        ardary_base_url="http://ardary.test",
        ardary_login="alice",
        ardary_access_key="k",  # type: ignore[arg-type]
        **kw,
    )


def _prepared(now: datetime, phone: str = FR, **fields: Any) -> Prepared:
    request = SendRequest("m1", "alice", phone, "Promo -20 %", now, **fields)
    checked = check_request(request, opted_out=lambda _p: False, now=now)
    assert isinstance(checked, Prepared)
    return checked


SEND_TIMES = SendTimes.from_settings(_settings())


def test_a_marketing_message_outside_its_window_is_moved_to_the_next_opening() -> None:
    planned = SEND_TIMES.plan(_prepared(SUNDAY_NOON, marketing=True), SUNDAY_NOON)
    assert isinstance(planned, Prepared)
    assert planned.request.date_to_send == MONDAY_8


def test_a_transactional_message_is_never_moved() -> None:
    prepared = _prepared(SUNDAY_NOON)
    assert SEND_TIMES.plan(prepared, SUNDAY_NOON) is prepared


def test_a_marketing_message_inside_its_window_goes_as_asked() -> None:
    prepared = _prepared(TUESDAY_NOON, marketing=True)
    assert SEND_TIMES.plan(prepared, TUESDAY_NOON) is prepared
    later = _prepared(TUESDAY_NOON, marketing=True, date_to_send=TUESDAY_NOON + timedelta(hours=1))
    assert SEND_TIMES.plan(later, TUESDAY_NOON) is later  # its own date_to_send is open


def test_its_own_date_to_send_in_a_closed_period_is_moved_too() -> None:
    saturday_night = datetime(2026, 3, 7, 21, 0, tzinfo=UTC)  # 22:00 in Paris
    prepared = _prepared(TUESDAY_NOON, marketing=True, date_to_send=saturday_night)
    planned = SEND_TIMES.plan(prepared, TUESDAY_NOON)
    assert isinstance(planned, Prepared)
    assert planned.request.date_to_send == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)  # Monday 08:00


def test_a_marketing_message_whose_window_never_opens_is_rejected_with_a_code() -> None:
    narrow = SendTimes.from_settings(
        _settings(sending_windows={"*": {"days": "Mon-Sun", "hours": "09:00-10:00"}})
    )
    refused = narrow.plan(_prepared(SUNDAY_NOON, RU_MOBILE, marketing=True), SUNDAY_NOON)
    assert refused == Refusal("REJECTED", (NO_SENDING_WINDOW,), RU_MOBILE)
    # a transactional message to the same number is not the window's business
    assert isinstance(narrow.plan(_prepared(SUNDAY_NOON, RU_MOBILE), SUNDAY_NOON), Prepared)


def test_the_second_check_changes_only_what_became_late() -> None:
    # moved at intake: the check before the call keeps the opening
    moved = SEND_TIMES.plan(_prepared(SUNDAY_NOON, marketing=True), SUNDAY_NOON)
    assert isinstance(moved, Prepared)
    assert SEND_TIMES.plan(moved, SUNDAY_NOON + timedelta(minutes=5)) is moved
    # open at intake (Saturday 19:59:50 in Paris), still buffered after 20:00: moved then
    closing = datetime(2026, 3, 7, 18, 59, 50, tzinfo=UTC)
    waited = SEND_TIMES.plan(_prepared(closing, marketing=True), closing)
    assert isinstance(waited, Prepared) and waited.request.date_to_send is None
    late = SEND_TIMES.plan(waited, closing + timedelta(seconds=30))
    assert isinstance(late, Prepared)
    assert late.request.date_to_send == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    # moved to 08:00 at intake and sent after 08:00: the past date is dropped (send now)
    after_opening = SEND_TIMES.plan(moved, MONDAY_8 + timedelta(seconds=3))
    assert isinstance(after_opening, Prepared) and after_opening.request.date_to_send is None


async def test_ardary_gets_the_opening_as_date_to_send_and_the_result_says_when(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipeline.agents.outbound import calls as calls_module

    monkeypatch.setattr(calls_module, "_now", lambda: SUNDAY_NOON)
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        data = [{"id_sms_api": m["id_sms_api"], "sms_per_message": 1} for m in body["messages"]]
        return httpx.Response(200, json={"data": data})

    settings = _settings()
    gate = SendGate(None)
    gate.set_share(1, 1)
    calls = ArdaryCalls(settings, OutboundOptions(), gate, Telemetry(), SEND_TIMES)
    marketing = _prepared(SUNDAY_NOON, marketing=True)
    transactional = _prepared(SUNDAY_NOON)
    transactional = Prepared(
        SendRequest("m2", "alice", FR, "Your code is 1234", SUNDAY_NOON), transactional.segments
    )
    async with calls.session(httpx.MockTransport(handler)):
        results = await calls.call(BatchKey("alice", "SERVER", None, 1), [marketing, transactional])
    [body] = bodies
    sent = {m["id_sms_api"]: m for m in body["messages"]}
    assert sent["m1"]["date_to_send"] == "2026-03-02 08:00:00"  # Paris, Ardary's clock
    assert sent["m1"]["addStop"] == 1 and sent["m1"]["marketing"] == 1
    assert "date_to_send" not in sent["m2"] and "marketing" not in sent["m2"]
    assert [r.scheduled_for for r in results] == [MONDAY_8, None]
    assert [r.outcome for r in results] == ["SUBMITTED", "SUBMITTED"]


def test_cost_of_the_window_check_per_message() -> None:
    """Prints µs per message (no time asserted: the machine is shared)."""
    send_times = SendTimes.from_settings(_settings())
    n = 20_000
    phones = [f"+336{i:08d}" for i in range(500)]
    base = TUESDAY_NOON
    prepared = [_prepared(base, phones[i % 500], marketing=True) for i in range(2000)]
    transactional = [_prepared(base, phones[i % 500]) for i in range(2000)]
    moments = [base + timedelta(milliseconds=50 * i) for i in range(n)]

    def per_message(items: list[Prepared]) -> float:
        start = time.perf_counter()
        for i, at in enumerate(moments):
            send_times.plan(items[i % len(items)], at)
        return (time.perf_counter() - start) / n * 1e6

    per_message(prepared)  # warm the caches as a running agent has them
    marketing_us, transactional_us = per_message(prepared), per_message(transactional)
    print(f"\nwindow check: {marketing_us:.2f} µs/marketing msg, {transactional_us:.2f} µs/other")
    assert all(isinstance(send_times.plan(p, base), Prepared) for p in prepared[:10])

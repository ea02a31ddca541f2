"""Sending windows per recipient: DST changes, holidays, multi-zone numbers, properties, cost."""

from __future__ import annotations

import time
from collections.abc import Container
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays
import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import timezone as phone_timezones

from pipeline.core.sending_windows import (
    SendingSchedule,
    plan_send_time,
    recipient_of,
)
from pipeline.records import SendRequest
from pipeline.windowspec import DEFAULT_WINDOWS, SendingWindow, SendingWindows

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
FR = "+33612345678"
US_NY = "+12125551234"  # New York only
US_IDAHO = "+12085551234"  # area code 208: America/Boise (Mountain) and America/Los_Angeles
RU_MOBILE = "+79161234567"  # a Russian mobile range: 16 zones, UTC+2 (Bucharest) to UTC+12
AU_MOBILE = "+61412345678"  # an Australian mobile range: Cocos (UTC+6:30) to Lord Howe
BR = "+5511912345678"
UNPARSEABLE = "+99912345"

SCHEDULE = SendingSchedule(DEFAULT_WINDOWS)


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_the_number_gives_country_and_zones() -> None:
    assert recipient_of(FR).country == "FR"
    assert recipient_of(FR).zones == ("Europe/Paris",)
    assert recipient_of(US_IDAHO).zones == ("America/Boise", "America/Los_Angeles")
    assert len(recipient_of(RU_MOBILE).zones) > 10
    assert recipient_of(UNPARSEABLE).country is None and recipient_of(UNPARSEABLE).zones == ()


# --- France: DST, Saturday evening, public holidays ------------------------------------------


@pytest.mark.parametrize(
    ("at", "expected", "why"),
    [
        # last Sunday of March 2026 (the 29th): Saturday 21:00 CET → Monday 08:00 CEST = 06:00Z
        (paris(2026, 3, 28, 21, 0), utc(2026, 3, 30, 6, 0), "spring forward over a Sunday"),
        # last Sunday of October 2026 (the 25th): Saturday 21:00 CEST → Monday 08:00 CET = 07:00Z
        (paris(2026, 10, 24, 21, 0), utc(2026, 10, 26, 7, 0), "fall back over a Sunday"),
        # Saturday 20:00 exactly is closed (the window is [08:00, 20:00))
        (paris(2026, 6, 13, 20, 0), utc(2026, 6, 15, 6, 0), "Saturday evening → Monday"),
        # Easter Monday 2026 is 6 April: Saturday evening → Tuesday 08:00
        (paris(2026, 4, 4, 20, 30), utc(2026, 4, 7, 6, 0), "Monday is a holiday → Tuesday"),
        # 1 May 2026 is a Friday (Labour Day) → Saturday 2 May 08:00
        (paris(2026, 4, 30, 20, 30), utc(2026, 5, 2, 6, 0), "1 May is closed"),
        (paris(2026, 5, 1, 12, 0), utc(2026, 5, 2, 6, 0), "1 May at noon"),
        # 14 July 2026 is a Tuesday → Wednesday 08:00
        (paris(2026, 7, 14, 9, 0), utc(2026, 7, 15, 6, 0), "14 July is closed"),
        (paris(2026, 7, 13, 7, 59), utc(2026, 7, 13, 6, 0), "before opening → same day"),
    ],
)
def test_france(at: datetime, expected: datetime, why: str) -> None:
    assert SCHEDULE.next_opening(at, FR) == expected, why


def test_inside_the_window_the_input_itself_comes_back() -> None:
    at = paris(2026, 7, 13, 12, 0, 1, 999)
    assert SCHEDULE.next_opening(at, FR) is at
    assert SCHEDULE.is_open(at, FR)
    assert not SCHEDULE.is_open(paris(2026, 7, 12, 12, 0), FR)  # a Sunday


# --- the United States: every day 09:00-20:00 local, across DST -------------------------------


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # second Sunday of March 2026 (the 8th): 09:00 EDT = 13:00Z (the day before: 14:00Z)
        (datetime(2026, 3, 7, 21, 0, tzinfo=NEW_YORK), utc(2026, 3, 8, 13, 0)),
        (datetime(2026, 3, 7, 8, 0, tzinfo=NEW_YORK), utc(2026, 3, 7, 14, 0)),
        # first Sunday of November 2026 (the 1st): 09:00 EST = 14:00Z (the day before: 13:00Z)
        (datetime(2026, 10, 31, 22, 0, tzinfo=NEW_YORK), utc(2026, 11, 1, 14, 0)),
        (datetime(2026, 10, 31, 8, 0, tzinfo=NEW_YORK), utc(2026, 10, 31, 13, 0)),
        # Sunday is open in the US
        (
            datetime(2026, 3, 8, 19, 59, tzinfo=NEW_YORK),
            datetime(2026, 3, 8, 19, 59, tzinfo=NEW_YORK),
        ),
    ],
)
def test_united_states_across_dst(at: datetime, expected: datetime) -> None:
    assert SCHEDULE.next_opening(at, US_NY) == expected


def test_a_us_number_spanning_two_zones_must_be_open_in_both() -> None:
    boise, la = ZoneInfo("America/Boise"), ZoneInfo("America/Los_Angeles")
    # 09:30 in Boise is 08:30 in Los Angeles: closed until 09:00 there (10:00 in Boise)
    at = datetime(2026, 6, 10, 9, 30, tzinfo=boise)
    assert SCHEDULE.next_opening(at, US_IDAHO) == datetime(2026, 6, 10, 9, 0, tzinfo=la)
    # 20:30 in Boise is 19:30 in Los Angeles: closed (Boise shut at 20:00) until tomorrow
    at = datetime(2026, 6, 10, 20, 30, tzinfo=boise)
    assert SCHEDULE.next_opening(at, US_IDAHO) == datetime(2026, 6, 11, 9, 0, tzinfo=la)
    # 19:59 in Boise: open in both
    at = datetime(2026, 6, 10, 19, 59, tzinfo=boise)
    assert SCHEDULE.next_opening(at, US_IDAHO) is at


def test_a_russian_mobile_range_is_open_only_where_all_its_zones_overlap() -> None:
    # Monday 9 March 2026: 08:00 in Bucharest (UTC+2) is 06:00Z, 20:00 in Anadyr (UTC+12) 08:00Z
    assert SCHEDULE.next_opening(utc(2026, 3, 9, 5, 0), RU_MOBILE) == utc(2026, 3, 9, 6, 0)
    assert SCHEDULE.is_open(utc(2026, 3, 9, 7, 59), RU_MOBILE)
    assert SCHEDULE.next_opening(utc(2026, 3, 9, 8, 0), RU_MOBILE) == utc(2026, 3, 10, 6, 0)


def test_an_australian_mobile_range_across_the_weekend() -> None:
    # Sunday is closed everywhere; Monday opens at 08:00 in Cocos (UTC+6:30) = 01:30Z and
    # closes at 20:00 on Lord Howe (UTC+11 in March) = 09:00Z
    assert SCHEDULE.next_opening(utc(2026, 3, 8, 2, 0), AU_MOBILE) == utc(2026, 3, 9, 1, 30)
    assert SCHEDULE.next_opening(utc(2026, 3, 9, 9, 0), AU_MOBILE) == utc(2026, 3, 10, 1, 30)


def test_unknown_zone_or_country_uses_the_star_window_in_the_default_zone() -> None:
    # unparseable: "*" (Mon-Sat 08-20) in Europe/Paris
    assert SCHEDULE.next_opening(paris(2026, 3, 8, 12, 0), UNPARSEABLE) == utc(2026, 3, 9, 7, 0)
    new_york_default = SendingSchedule(DEFAULT_WINDOWS, default_zone="America/New_York")
    at = datetime(2026, 3, 9, 7, 0, tzinfo=NEW_YORK)
    assert new_york_default.next_opening(at, UNPARSEABLE) == datetime(
        2026, 3, 9, 8, 0, tzinfo=NEW_YORK
    )
    # a French number without zone data (+33 2 62: Réunion's range, unassigned in France):
    # the FR rule (known country), in the default zone
    rule = new_york_default.rule_for("+33262123456")
    assert (rule.code, rule.zones) == ("FR", (NEW_YORK,))


def test_a_window_that_never_opens_for_a_number_gives_none() -> None:
    short = SendingWindow(frozenset(range(7)), 9 * 60, 10 * 60, holidays_closed=False)
    schedule = SendingSchedule(SendingWindows({"*": short}))
    assert schedule.next_opening(utc(2026, 3, 9, 5, 0), RU_MOBILE) is None
    assert schedule.next_opening(utc(2026, 3, 9, 5, 0), FR) == utc(2026, 3, 9, 8, 0)


def test_holidays_are_injectable_and_only_closed_where_the_window_says_so() -> None:
    closed_day = date(2026, 6, 10)

    def calendar(country: str) -> Container[date]:
        return {closed_day} if country == "FR" else set()

    schedule = SendingSchedule(DEFAULT_WINDOWS, holidays_of=calendar)
    assert schedule.next_opening(paris(2026, 6, 10, 12, 0), FR) == utc(2026, 6, 11, 6, 0)
    assert schedule.next_opening(paris(2026, 7, 14, 12, 0), FR) == paris(2026, 7, 14, 12, 0)
    # the US rule keeps holidays open: 4 July is an ordinary day
    at = datetime(2026, 7, 4, 12, 0, tzinfo=NEW_YORK)
    assert SCHEDULE.next_opening(at, US_NY) is at


def test_an_opening_at_midnight_utc_the_next_day_is_found_as_such() -> None:
    # Monday 21:00 in São Paulo (UTC-3) is Tuesday 00:00 UTC: the search crosses a UTC day and
    # lands exactly on an opening (found by hypothesis)
    monday_evening = SendingWindow(frozenset({0}), 21 * 60, 21 * 60 + 15, holidays_closed=False)
    schedule = SendingSchedule(SendingWindows({"*": monday_evening}))
    sunday_evening = utc(2024, 1, 1, 0, 0)  # Sunday 21:00 local: closed
    assert schedule.next_opening(sunday_evening, BR) == utc(2024, 1, 2, 0, 0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SCHEDULE.next_opening(datetime(2026, 3, 9, 12, 0), FR)


# --- properties ------------------------------------------------------------------------------

PHONES = [FR, US_NY, US_IDAHO, RU_MOBILE, AU_MOBILE, BR, "+447911123456", UNPARSEABLE]


@cache
def _where(phone: str) -> tuple[str | None, tuple[ZoneInfo, ...]]:
    """Country and zones straight from phonenumbers (an oracle independent of recipient_of)."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return None, (PARIS,)
    names = [z for z in phone_timezones.time_zones_for_number(number) if z != "Etc/Unknown"]
    return phonenumbers.region_code_for_number(number), tuple(map(ZoneInfo, names)) or (PARIS,)


@cache
def _holidays(country: str) -> Container[date]:
    try:
        return holidays.country_holidays(country)
    except NotImplementedError:
        return set()


def open_by_the_wall_clock(windows: SendingWindows, at: datetime, phone: str) -> bool:
    """Inside the window in every zone of the number, read off each local wall clock."""
    country, zones = _where(phone)
    window = windows.rule_for(country)[1]
    for zone in zones:
        local = at.astimezone(zone)
        second = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
        if local.weekday() not in window.days:
            return False
        if window.holidays_closed and country and local.date() in _holidays(country):
            return False
        if not window.opens * 60 <= second < window.closes * 60:
            return False
    return True


# Opening hours from 05:00: the zones above change their clocks between 00:00 and 04:00, where
# "08:00 on the wall" and "the instant of 08:00" are not the same thing.
@st.composite
def windows_strategy(draw: st.DrawFn) -> SendingWindows:
    def window() -> SendingWindow:
        days = draw(st.frozensets(st.integers(0, 6), min_size=1))
        opens = draw(st.integers(5 * 4, 23 * 4)) * 15
        closes = draw(st.integers(opens // 15 + 1, 24 * 4)) * 15
        return SendingWindow(days, opens, closes, draw(st.booleans()))

    return SendingWindows({"*": window(), "FR": window(), "US": window()})


times = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(windows_strategy(), times, st.sampled_from(PHONES))
def test_properties_of_the_next_opening(windows: SendingWindows, at: datetime, phone: str) -> None:
    schedule = SendingSchedule(windows)
    result = schedule.next_opening(at, phone)
    if open_by_the_wall_clock(windows, at, phone):
        assert result is at  # open: the input itself
        return
    if result is None:  # no opening within the horizon (zones that never overlap)
        return
    assert result > at  # never earlier than asked
    assert open_by_the_wall_clock(windows, result, phone)  # never inside a closed period
    assert schedule.next_opening(result, phone) == result  # idempotent
    # and it is the *next* opening: closed just before it and at points in between
    assert not open_by_the_wall_clock(windows, result - timedelta(seconds=1), phone)
    span = result - at
    for k in range(1, 16):
        assert not open_by_the_wall_clock(windows, at + span * k / 16, phone)


@settings(max_examples=200, deadline=None)
@given(times, st.sampled_from(PHONES))
def test_properties_with_the_built_in_windows(at: datetime, phone: str) -> None:
    result = SCHEDULE.next_opening(at, phone)
    assert result is not None  # the built-in windows open for every one of these numbers
    assert result >= at
    assert open_by_the_wall_clock(DEFAULT_WINDOWS, result, phone)
    assert SCHEDULE.next_opening(result, phone) == result
    assert (result is at) == open_by_the_wall_clock(DEFAULT_WINDOWS, at, phone)


# --- the send time of a request ---------------------------------------------------------------


def request(**fields: object) -> SendRequest:
    values: dict[str, object] = {
        "id_sms_api": "id-1",
        "login": "acme",
        "phone_number": FR,
        "message": "Hello",
        "requested_at": utc(2026, 1, 1),
    }
    values.update(fields)
    return SendRequest(**values)  # type: ignore[arg-type]


SUNDAY_NOON = paris(2026, 3, 8, 12, 0)
MONDAY_8 = utc(2026, 3, 9, 7, 0)


def test_transactional_messages_are_never_moved() -> None:
    plan = plan_send_time(request(), now=SUNDAY_NOON, schedule=SCHEDULE)
    assert (plan.date_to_send, plan.moved, plan.blocked) == (None, False, False)
    later = SUNDAY_NOON + timedelta(hours=1)  # still Sunday: closed for marketing
    plan = plan_send_time(request(date_to_send=later), now=SUNDAY_NOON, schedule=SCHEDULE)
    assert (plan.date_to_send, plan.moved) == (later, False)


def test_a_marketing_message_outside_its_window_is_moved_to_the_next_opening() -> None:
    plan = plan_send_time(request(marketing=True), now=SUNDAY_NOON, schedule=SCHEDULE)
    assert (plan.date_to_send, plan.moved) == (MONDAY_8, True)
    # its own date_to_send is where the window is looked up from
    own = paris(2026, 3, 14, 21, 0)  # a Saturday evening
    plan = plan_send_time(
        request(marketing=True, date_to_send=own), now=SUNDAY_NOON, schedule=SCHEDULE
    )
    assert (plan.date_to_send, plan.moved) == (utc(2026, 3, 16, 7, 0), True)


def test_a_marketing_message_inside_its_window_goes_as_asked() -> None:
    tuesday = paris(2026, 3, 10, 10, 0)
    assert (
        plan_send_time(request(marketing=True), now=tuesday, schedule=SCHEDULE).date_to_send is None
    )
    later = tuesday + timedelta(hours=2)
    plan = plan_send_time(
        request(marketing=True, date_to_send=later), now=tuesday, schedule=SCHEDULE
    )
    assert (plan.date_to_send, plan.moved) == (later, False)
    # a date_to_send already past counts as now
    past = tuesday - timedelta(days=3)  # a Saturday night: closed, but past
    plan = plan_send_time(
        request(marketing=True, date_to_send=past), now=tuesday, schedule=SCHEDULE
    )
    assert (plan.date_to_send, plan.moved) == (None, False)


def test_a_marketing_message_whose_window_never_opens_is_blocked() -> None:
    short = SendingWindow(frozenset(range(7)), 9 * 60, 10 * 60, holidays_closed=False)
    schedule = SendingSchedule(SendingWindows({"*": short}))
    plan = plan_send_time(
        request(marketing=True, phone_number=RU_MOBILE), now=SUNDAY_NOON, schedule=schedule
    )
    assert plan.blocked and plan.date_to_send is None


# --- cost ------------------------------------------------------------------------------------


def test_micro_benchmark_of_the_window_check() -> None:
    """Prints µs per call (does not assert a time: this machine is shared)."""
    schedule = SendingSchedule(DEFAULT_WINDOWS)
    base = utc(2026, 3, 9, 12, 0)
    phones = [f"+3361234{i:04d}" for i in range(200)] + [US_IDAHO, RU_MOBILE]
    n = 20_000
    moments = [base + timedelta(seconds=7 * i) for i in range(n)]
    start = time.perf_counter()
    for i, at in enumerate(moments):
        schedule.next_opening(at, phones[i % len(phones)])
    warm = (time.perf_counter() - start) / n * 1e6
    closed = [utc(2026, 3, 8, 12, 0) + timedelta(seconds=i) for i in range(n)]  # a Sunday
    start = time.perf_counter()
    moved = [schedule.next_opening(at, FR) for at in closed]
    moving = (time.perf_counter() - start) / n * 1e6
    print(f"\nsending window: {warm:.2f} µs/call (mostly open), {moving:.2f} µs/call (moved)")
    assert set(moved) == {MONDAY_8}

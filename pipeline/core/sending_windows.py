"""When a marketing SMS may reach its recipient: the sending window in the recipient's local time.

The recipient's country and time zones come from the phone number (`phonenumbers` and its
`phonenumbers.timezone` data); the window from SENDING_WINDOWS (`pipeline.windowspec`) by that
country, else `*`; public holidays from the `holidays` package (national holidays of the
number's country, no regional ones). Rules:

- A number that spans several zones (a US area code across two zones, a Russian or Australian
  mobile range) must be inside the window in all of them: the open periods are the intersection
  of each zone's.
- A number without a known zone is taken to be in the default zone (ARDARY_TIMEZONE, Europe/Paris
  unless set: the account's own clock, the one `date_to_send` is written in); a number without a
  known country follows the `*` window (and has no holidays).
- Times are instants: a window's 08:00 is 08:00 of the local wall clock on that date, so the
  opening moves with daylight saving time. A wall time that does not exist (spring forward)
  counts with the offset before the change, a repeated one (fall back) at its first occurrence.
- If the window never opens within `HORIZON_DAYS` (hours shorter than the gap between the
  number's zones, e.g. 09:00-10:00 for a Russian mobile spanning UTC+2 to UTC+12; or a US
  toll-free number, which phonenumbers places in every zone from Guam to Pago Pago), the answer
  is None: the message cannot be sent legally by this rule, and the caller refuses it.

Cost: a number's (country, zones) is cached by number; each (country, zones) rule's open periods
are computed once per UTC day and cached, so a check is a few dictionary look-ups and a bisect
(`tests/unit/core/test_sending_windows.py` prints the figure).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Container
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers
from phonenumbers import timezone as phone_timezones

from pipeline.records import SendRequest
from pipeline.windowspec import SendingWindow, SendingWindows

__all__ = [
    "HORIZON_DAYS",
    "AppliedRule",
    "Recipient",
    "SendTime",
    "SendingSchedule",
    "national_holidays",
    "plan_send_time",
    "recipient_of",
]

HORIZON_DAYS = 400
_DAY_SECONDS = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_UNKNOWN_ZONE = "Etc/Unknown"
_NO_HOLIDAYS: frozenset[date] = frozenset()


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the number says about where its owner is: ISO country (None: unknown), IANA zones."""

    country: str | None
    zones: tuple[str, ...]


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@lru_cache(maxsize=65_536)
def recipient_of(phone: str) -> Recipient:
    """The country and time zones of an E.164 number (cached: numbers recur)."""
    try:
        number = phonenumbers.parse(phone)
    except phonenumbers.NumberParseException:
        return Recipient(None, ())
    region = phonenumbers.region_code_for_number(number)
    country = region if region in phonenumbers.SUPPORTED_REGIONS else None
    names = phone_timezones.time_zones_for_number(number)
    zones = tuple(sorted(n for n in names if n != _UNKNOWN_ZONE and _zone(n) is not None))
    return Recipient(country, zones)


@lru_cache(maxsize=512)
def national_holidays(country: str) -> Container[date]:
    """The country's public holidays (all years, computed as asked); empty when unknown."""
    try:
        return holidays.country_holidays(country)
    except NotImplementedError:  # the package has no calendar for this country
        return _NO_HOLIDAYS


@dataclass(frozen=True, slots=True)
class AppliedRule:
    """The window that applies to a recipient: by which code, in which zones, which holidays."""

    code: str
    window: SendingWindow
    zones: tuple[ZoneInfo, ...]
    country: str | None


@dataclass(frozen=True, slots=True)
class _Day:
    """A rule's open periods overlapping one UTC day, as epoch seconds (sorted, disjoint)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]


def _wall(day: date, minutes: int, zone: ZoneInfo) -> int:
    if minutes >= 24 * 60:
        day, minutes = day + timedelta(days=1), minutes - 24 * 60
    moment = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return int(moment.timestamp())


def _zone_periods(
    rule: AppliedRule, zone: ZoneInfo, utc_day: int, closed: Container[date]
) -> list[tuple[int, int]]:
    lo, hi = utc_day * _DAY_SECONDS, (utc_day + 1) * _DAY_SECONDS
    middle = date.fromordinal(_EPOCH_ORDINAL + utc_day)
    periods: list[tuple[int, int]] = []
    for shift in (-1, 0, 1):  # zones are within UTC-12..+14: these local dates cover the day
        local = middle + timedelta(days=shift)
        if local.weekday() not in rule.window.days or local in closed:
            continue
        start, end = _wall(local, rule.window.opens, zone), _wall(local, rule.window.closes, zone)
        if start < end and start < hi and end > lo:
            periods.append((start, end))
    return periods


def _intersect(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


class SendingSchedule:
    """Whether a number's sending window is open at a given time, else its next opening.

    Pure: the time is an argument (tests pass any instant). `holidays_of` is injectable;
    `max_cached_days` bounds the per-day cache (cleared whole when full).
    """

    def __init__(
        self,
        windows: SendingWindows,
        *,
        default_zone: ZoneInfo | str = "Europe/Paris",
        holidays_of: Callable[[str], Container[date]] = national_holidays,
        max_cached_days: int = 100_000,
    ) -> None:
        self.windows = windows
        self.default_zone = (
            default_zone if isinstance(default_zone, ZoneInfo) else ZoneInfo(default_zone)
        )
        self._holidays_of = holidays_of
        self._max_cached_days = max_cached_days
        self._rules: dict[Recipient, tuple[int, AppliedRule]] = {}
        self._rule_ids: dict[AppliedRule, int] = {}
        self._days: dict[tuple[int, int], _Day] = {}
        self._phones: dict[str, tuple[int, AppliedRule]] = {}
        self._max_cached_phones = 65_536

    def rule_for(self, phone: str) -> AppliedRule:
        """The window that applies to `phone` (E.164), in which zones."""
        return self._rule(recipient_of(phone))[1]

    def _rule(self, recipient: Recipient) -> tuple[int, AppliedRule]:
        found = self._rules.get(recipient)
        if found is None:
            code, window = self.windows.rule_for(recipient.country)
            zones = tuple(z for z in map(_zone, recipient.zones) if z is not None)
            rule = AppliedRule(code, window, zones or (self.default_zone,), recipient.country)
            rule_id = self._rule_ids.setdefault(rule, len(self._rule_ids))
            found = self._rules[recipient] = (rule_id, rule)
        return found

    def _day(self, rule_id: int, rule: AppliedRule, utc_day: int) -> _Day:
        """The rule's open periods overlapping `utc_day` (computed on a cache miss)."""
        closed: Container[date] = _NO_HOLIDAYS
        if rule.window.holidays_closed and rule.country is not None:
            closed = self._holidays_of(rule.country)
        periods = _zone_periods(rule, rule.zones[0], utc_day, closed)
        for zone in rule.zones[1:]:
            periods = _intersect(periods, _zone_periods(rule, zone, utc_day, closed))
        day = _Day(tuple(s for s, _ in periods), tuple(e for _, e in periods))
        if len(self._days) >= self._max_cached_days:
            self._days.clear()
        self._days[(rule_id, utc_day)] = day
        return day

    def next_opening(self, at: datetime, phone: str) -> datetime | None:
        """`at` itself if the window of `phone` is open then, else its next opening (UTC).

        None when it does not open within HORIZON_DAYS. `at` must be timezone-aware.
        """
        if at.tzinfo is None:
            raise ValueError("the send time must be timezone-aware")
        found = self._phones.get(phone)
        if found is None:
            if len(self._phones) >= self._max_cached_phones:
                self._phones.clear()
            found = self._phones[phone] = self._rule(recipient_of(phone))
        rule_id, rule = found
        asked = moment = at.timestamp()
        utc_day = int(moment // _DAY_SECONDS)
        last_day = utc_day + HORIZON_DAYS
        while utc_day < last_day:
            day = self._days.get((rule_id, utc_day)) or self._day(rule_id, rule, utc_day)
            index = bisect_right(day.ends, moment)  # the first period still open after `moment`
            if index < len(day.ends):
                start = day.starts[index]
                return at if start <= asked else datetime.fromtimestamp(start, UTC)
            utc_day += 1
            moment = float(utc_day * _DAY_SECONDS)
        return None

    def is_open(self, at: datetime, phone: str) -> bool:
        """True when a message may reach `phone` at `at`."""
        return self.next_opening(at, phone) == at


@dataclass(frozen=True, slots=True)
class SendTime:
    """When a request may go: the `date_to_send` to give Ardary (None: at once), and why.

    `moved`: a marketing message whose time fell outside its window, moved to the next opening.
    `blocked`: a marketing message whose window never opens (see the module docstring).
    """

    date_to_send: datetime | None
    moved: bool = False
    blocked: bool = False


def plan_send_time(request: SendRequest, *, now: datetime, schedule: SendingSchedule) -> SendTime:
    """The send time of a (checked) request: transactional as asked, marketing inside its window.

    The send time is the request's `date_to_send` if in the future, else `now`. A transactional
    message is never moved. A marketing message outside its recipient's window gets the next
    opening as `date_to_send`, so Ardary holds it (the pipeline keeps no timer).
    """
    asked = request.date_to_send if request.date_to_send and request.date_to_send > now else None
    if not request.marketing:
        return SendTime(asked)
    opening = schedule.next_opening(asked or now, request.phone_number)
    if opening is None:
        return SendTime(None, blocked=True)
    if opening == (asked or now):
        return SendTime(asked)
    return SendTime(opening, moved=True)

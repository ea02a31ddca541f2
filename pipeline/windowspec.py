"""Sending windows as configured: the SENDING_WINDOWS JSON shape, its checks and the built-in rules.

A window says when a marketing SMS may reach a recipient, in the recipient's local time: the
days of the week, the opening hours, and whether public holidays are closed. It is chosen by the
recipient's country (ISO 3166-1 alpha-2, as `phonenumbers` names regions), `*` for every other
country. `pipeline.core.sending_windows` applies them; this module only describes and checks
them, so the settings can refuse a bad value at start-up.

SENDING_WINDOWS is a JSON object from country code (or `*`) to a window::

    {"FR": {"days": "Mon-Sat", "hours": "08:00-20:00", "holidays": "closed"},
     "DE": {"days": ["Mon-Fri"], "hours": "09:00-18:00"},
     "US": null}

- `days`: English day names or their first three letters, single or as ranges (`Mon-Fri`,
  `Sat-Mon` wraps), comma-separated in a string or as a JSON list.
- `hours`: `HH:MM-HH:MM` local time, opening before closing, closing at most `24:00` (a window
  does not run past midnight).
- `holidays`: `closed` (the country's public holidays, from the `holidays` package, are closed
  all day) or `open`.
- A field left out keeps the built-in rule's value for that code, else the `*` rule's; `null`
  drops a built-in country rule (its recipients then follow `*`). Entries are merged over the
  built-in rules, code by code.

Built-in rules (`DEFAULT_WINDOWS`):
- `FR` Monday-Saturday 08:00-20:00, public holidays closed: the French operators' code of
  practice for commercial SMS (no Sundays, no public holidays, 08:00-20:00).
- `US` every day 09:00-20:00: the intersection of the strictest rules, because a number does not
  say which state's law applies — the federal TCPA allows 08:00-21:00 recipient local time,
  Florida and Oklahoma 08:00-20:00, Connecticut 09:00-20:00. Public holidays are open (no such
  rule in those laws).
- `*` Monday-Saturday 08:00-20:00, public holidays open: a conservative default elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import phonenumbers

__all__ = [
    "ANY_COUNTRY",
    "DAY_NAMES",
    "DEFAULT_WINDOWS",
    "SendingWindow",
    "SendingWindows",
    "parse_sending_windows",
]

ANY_COUNTRY = "*"
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FIELDS = ("days", "hours", "holidays")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_MINUTES_PER_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class SendingWindow:
    """When messages may reach a recipient, in the recipient's local time.

    `days` are `date.weekday()` numbers (0 = Monday); `opens`/`closes` are minutes after local
    midnight, `opens < closes <= 1440`; `holidays_closed` closes the country's public holidays.
    """

    days: frozenset[int]
    opens: int
    closes: int
    holidays_closed: bool

    def describe(self) -> dict[str, str]:
        """The window in the SENDING_WINDOWS shape (for logs and error messages)."""
        days = ",".join(DAY_NAMES[d] for d in sorted(self.days))
        hours = f"{_hhmm(self.opens)}-{_hhmm(self.closes)}"
        return {"days": days, "hours": hours, "holidays": _holidays_word(self.holidays_closed)}


@dataclass(frozen=True, slots=True)
class SendingWindows:
    """The window of each country with a rule of its own, and the `*` window for the others."""

    by_country: Mapping[str, SendingWindow]

    def __post_init__(self) -> None:
        if ANY_COUNTRY not in self.by_country:
            raise ValueError('the "*" window is required')

    def rule_for(self, country: str | None) -> tuple[str, SendingWindow]:
        """The code whose rule applies to `country` (None: unknown) and its window."""
        if country is not None and country in self.by_country:
            return country, self.by_country[country]
        return ANY_COUNTRY, self.by_country[ANY_COUNTRY]

    def describe(self) -> dict[str, dict[str, str]]:
        """Every rule in the SENDING_WINDOWS shape."""
        return {code: w.describe() for code, w in sorted(self.by_country.items())}


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _holidays_word(closed: bool) -> str:
    return "closed" if closed else "open"


_MON_SAT = frozenset(range(6))
DEFAULT_WINDOWS = SendingWindows(
    {
        "FR": SendingWindow(_MON_SAT, 8 * 60, 20 * 60, holidays_closed=True),
        "US": SendingWindow(frozenset(range(7)), 9 * 60, 20 * 60, holidays_closed=False),
        ANY_COUNTRY: SendingWindow(_MON_SAT, 8 * 60, 20 * 60, holidays_closed=False),
    }
)


def _day(token: str) -> int:
    word = token.strip().lower()
    for number, full in enumerate(_FULL_NAMES):
        if len(word) >= 3 and full.startswith(word):
            return number
    raise ValueError(f"unknown day {token.strip()!r} (use Mon, Tue, … Sun)")


def _days(value: Any) -> frozenset[int]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ValueError('days must be a string like "Mon-Sat" or a list of such strings')
    days: set[int] = set()
    for item in items:
        for part in item.split(","):
            if not part.strip():
                continue
            first, sep, last = part.partition("-")
            start = _day(first)
            end = _day(last) if sep else start
            days.update((start + i) % 7 for i in range((end - start) % 7 + 1))
    if not days:
        raise ValueError("days names no day")
    return frozenset(days)


def _hours(value: Any) -> tuple[int, int]:
    match = _HOURS.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f'hours must be "HH:MM-HH:MM", not {json.dumps(value)}')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    opens, closes = h1 * 60 + m1, h2 * 60 + m2
    if m1 > 59 or m2 > 59 or h1 > 23 or closes > _MINUTES_PER_DAY or opens >= closes:
        raise ValueError(
            f"hours {value!r}: opening must be a time before closing, closing at most 24:00"
        )
    return opens, closes


def _holidays(value: Any) -> bool:
    if value not in ("closed", "open"):
        raise ValueError(f'holidays must be "closed" or "open", not {json.dumps(value)}')
    return bool(value == "closed")


def _code(key: str) -> str:
    if key == ANY_COUNTRY:
        return key
    code = key.strip().upper()
    if code == "UK":
        raise ValueError('"UK" is not an ISO country code: the United Kingdom is "GB"')
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError('not an ISO 3166-1 country code (two letters) or "*"')
    return code


def _window(entry: Any, base: SendingWindow) -> SendingWindow:
    if not isinstance(entry, Mapping):
        raise ValueError('must be an object like {"days": "Mon-Sat", "hours": "08:00-20:00"}')
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (expected days, hours, holidays)")
    window = base
    if "days" in entry:
        window = replace(window, days=_days(entry["days"]))
    if "hours" in entry:
        opens, closes = _hours(entry["hours"])
        window = replace(window, opens=opens, closes=closes)
    if "holidays" in entry:
        window = replace(window, holidays_closed=_holidays(entry["holidays"]))
    return window


def parse_sending_windows(text: str, defaults: SendingWindows = DEFAULT_WINDOWS) -> SendingWindows:
    """SENDING_WINDOWS merged over `defaults`; ValueError names the bad entry and what is wrong.

    An empty or blank value means the defaults.
    """
    if not text.strip():
        return defaults
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError('must be a JSON object from country code (or "*") to window')
    rules = dict(defaults.by_country)
    entries: dict[str, Any] = {}
    for key, entry in raw.items():
        try:
            entries[_code(key)] = entry
        except ValueError as exc:
            raise ValueError(f"entry {json.dumps(key)}: {exc}") from None
    # `*` first: the other entries' missing fields fall back to the configured `*`
    for code in sorted(entries, key=lambda c: c != ANY_COUNTRY):
        entry = entries[code]
        try:
            if entry is None:
                if code == ANY_COUNTRY:
                    raise ValueError('the "*" window cannot be removed')
                rules.pop(code, None)
                continue
            rules[code] = _window(entry, rules.get(code, rules[ANY_COUNTRY]))
        except ValueError as exc:
            raise ValueError(f"entry {json.dumps(code)}: {exc}") from None
    return SendingWindows(rules)

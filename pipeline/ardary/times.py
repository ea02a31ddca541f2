"""Ardary's timestamps and durations, in every shape its two dialects send, to UTC/seconds."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["get_zone", "parse_ardary_time", "parse_duration"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epoch values at or above this are milliseconds: 1e11 seconds is the year 5138.
_MILLIS_THRESHOLD = 100_000_000_000
# The records carry durations as an Avro int.
_MAX_DURATION = 2**31 - 1


@lru_cache(maxsize=64)
def get_zone(name: str) -> ZoneInfo:
    """Return the ZoneInfo for `name`, looked up once; raises ValueError for an unknown zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _from_epoch(value: float) -> datetime:
    try:
        if not math.isfinite(value):
            raise ValueError("epoch value is not finite")
        seconds = value / 1000 if abs(value) >= _MILLIS_THRESHOLD else value
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise ValueError("epoch value out of range") from exc


def _numeric(text: str) -> float | int | None:
    """The number `text` spells (ASCII digits, optional sign and one dot), else None."""
    unsigned = text[1:] if text[:1] in "+-" else text
    if not unsigned.isascii():
        return None
    if unsigned.isdigit():
        return int(text)
    whole, dot, frac = unsigned.partition(".")
    if dot and (whole or frac) and (not whole or whole.isdigit()) and (not frac or frac.isdigit()):
        return float(text)
    return None


def parse_ardary_time(value: str | int | float | None, tz: ZoneInfo) -> datetime | None:
    """Return `value` as an aware UTC datetime; None for None or an empty string.

    Accepts ISO-8601 with `Z` or an offset, naive `YYYY-MM-DD HH:MM:SS` / `...THH:MM:SS`
    (wall-clock time in `tz`, as Ardary's older dialect sends it; an ambiguous time at the end
    of DST takes the first occurrence, fold=0), and epoch seconds or milliseconds as a number
    or numeric string. Anything else raises ValueError, which callers turn into a flag.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"a {type(value).__name__} is not a timestamp")
    text = value.strip()
    if not text:
        return None
    number = _numeric(text)
    if number is not None:
        return _from_epoch(number)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError("not an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz, fold=0)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("timestamp out of range") from exc


def parse_duration(value: str | int | float | None) -> int:
    """Return a call duration in whole seconds.

    Ardary sends `"0"`, `"HH:MM:SS"` or numbers; `"MM:SS"` and numeric strings are accepted
    too. None and an empty string mean no duration (0). Negative, malformed or beyond an Avro
    int → ValueError.
    """
    seconds = _duration(value)
    if seconds > _MAX_DURATION:
        raise ValueError("duration out of range")
    return seconds


def _duration(value: str | int | float | None) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        if ":" in text:
            return _clock_duration(text)
        number = _numeric(text)
        if number is None:
            raise ValueError("not a duration")
        value = number
    if isinstance(value, int):
        if value < 0:
            raise ValueError("duration must not be negative")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("duration must be a finite, non-negative number")
        return round(value)
    raise ValueError(f"a {type(value).__name__} is not a duration")


def _clock_duration(text: str) -> int:
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError("duration is not HH:MM:SS or MM:SS")
    numbers = [int(p) for p in parts]
    if numbers[-1] >= 60 or (len(numbers) == 3 and numbers[1] >= 60):
        raise ValueError("duration has minutes or seconds above 59")
    total = 0
    for n in numbers:
        total = total * 60 + n
    return total

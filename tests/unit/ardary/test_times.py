"""Ardary timestamps (ISO, naive wall-clock, epoch) and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.ardary.times import get_zone, parse_ardary_time, parse_duration

PARIS = get_zone("Europe/Paris")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_z_suffix_with_millis() -> None:
    assert parse_ardary_time("2019-08-09T12:50:54.211Z", PARIS) == datetime(
        2019, 8, 9, 12, 50, 54, 211000, tzinfo=UTC
    )


def test_explicit_offset_wins_over_zone() -> None:
    assert parse_ardary_time("2020-01-02T13:34:00+05:00", PARIS) == utc(2020, 1, 2, 8, 34)


@pytest.mark.parametrize("sep", [" ", "T"])
def test_naive_winter_is_utc_plus_1(sep: str) -> None:
    assert parse_ardary_time(f"2020-01-02{sep}13:34:00", PARIS) == utc(2020, 1, 2, 12, 34)


def test_naive_summer_is_utc_plus_2() -> None:
    assert parse_ardary_time("2019-07-05 15:11:04", PARIS) == utc(2019, 7, 5, 13, 11, 4)


def test_result_is_aware_utc() -> None:
    result = parse_ardary_time("2020-01-02 13:34:00", PARIS)
    assert result is not None
    assert result.utcoffset() == timedelta(0)


def test_ambiguous_autumn_time_takes_first_occurrence() -> None:
    # 2023-10-29 02:30 happens twice in Paris; fold=0 is the CEST one (UTC+2).
    assert parse_ardary_time("2023-10-29 02:30:00", PARIS) == utc(2023, 10, 29, 0, 30)


def test_other_zone_is_honoured() -> None:
    assert parse_ardary_time("2020-01-02 13:34:00", get_zone("America/New_York")) == utc(
        2020, 1, 2, 18, 34
    )


@pytest.mark.parametrize(
    "value",
    [1577971800, 1577971800.0, "1577971800", 1577971800000, "1577971800000", " 1577971800 "],
)
def test_epoch_seconds_and_millis(value: object) -> None:
    assert parse_ardary_time(value, PARIS) == utc(2020, 1, 2, 13, 30)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, "", "   "])
def test_empty_is_none(value: str | None) -> None:
    assert parse_ardary_time(value, PARIS) is None


@pytest.mark.parametrize(
    "value",
    ["garbage", "2020-13-02 13:34:00", "2020-01-02 25:00:00", "1e400", "12:30", "--", "nan"],
)
def test_garbage_raises_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_ardary_time(value, PARIS)


@pytest.mark.parametrize("value", [True, float("inf"), float("nan"), 10**400, "9" * 40])
def test_non_timestamps_raise_value_error(value: object) -> None:
    with pytest.raises(ValueError):
        parse_ardary_time(value, PARIS)  # type: ignore[arg-type]


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        get_zone("Mars/Olympus_Mons")


def test_zone_lookup_is_cached() -> None:
    assert get_zone("Europe/Paris") is get_zone("Europe/Paris")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0),
        (0, 0),
        ("15:11:04", 15 * 3600 + 11 * 60 + 4),
        ("00:00:59", 59),
        ("01:00", 60),
        ("42", 42),
        (" 42 ", 42),
        (42.0, 42),
        (None, 0),
        ("", 0),
        ("100:00:00", 360_000),
    ],
)
def test_durations(value: str | int | float | None, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize(
    "value", ["abc", "1:2:3:4", "12:60", "1:60:00", "-5", -5, "1:-1", True, float("inf"), "1.2.3"]
)
def test_bad_durations_raise(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]


def test_duration_beyond_avro_int_raises() -> None:
    with pytest.raises(ValueError):
        parse_duration(2**31)

"""Issue 17's settings: SENDING_WINDOWS (its JSON shape, merge, refusals), per-login rates, the
pacing interval and the delivery-receipt timeout; a bad value names its variable and entry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.windowspec import (
    DEFAULT_WINDOWS,
    SendingWindow,
    parse_sending_windows,
)

VARIABLES = (
    "SENDING_WINDOWS",
    "OUTBOUND_RATE_PER_LOGIN",
    "OUTBOUND_PACING_SECONDS",
    "DELIVERY_RECEIPT_TIMEOUT_SECONDS",
    "LIFECYCLE_TTL_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


MON_SAT = frozenset(range(6))


def test_built_in_windows() -> None:
    rules = DEFAULT_WINDOWS.by_country
    assert rules["FR"] == SendingWindow(MON_SAT, 8 * 60, 20 * 60, holidays_closed=True)
    # the intersection of TCPA 08-21, Florida/Oklahoma 08-20, Connecticut 09-20
    assert rules["US"] == SendingWindow(frozenset(range(7)), 9 * 60, 20 * 60, False)
    assert rules["*"] == SendingWindow(MON_SAT, 8 * 60, 20 * 60, holidays_closed=False)
    assert DEFAULT_WINDOWS.rule_for("DE") == ("*", rules["*"])
    assert DEFAULT_WINDOWS.rule_for(None) == ("*", rules["*"])
    assert DEFAULT_WINDOWS.rule_for("US") == ("US", rules["US"])


def test_defaults_of_the_new_settings() -> None:
    s = load_settings()
    assert s.sending_windows == DEFAULT_WINDOWS
    assert s.outbound_rate_per_login == {}
    assert s.outbound_pacing_seconds == 0.25
    assert s.delivery_receipt_timeout_seconds == 172_800
    # logged in the shape it is configured in
    assert s.masked()["sending_windows"]["FR"] == {
        "days": "Mon,Tue,Wed,Thu,Fri,Sat",
        "hours": "08:00-20:00",
        "holidays": "closed",
    }


def test_sending_windows_from_the_environment_merge_over_the_built_in_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "SENDING_WINDOWS",
        json.dumps(
            {
                "fr": {"hours": "09:00-19:30"},  # days and holidays stay FR's
                "*": {"days": "Mon-Fri"},
                "DE": {"days": ["Mon", "wednesday", "Fri-Sat"], "holidays": "closed"},
                "BE": {"days": "Sat-Mon", "hours": "10:00-24:00"},  # a range that wraps
                "US": None,  # US recipients follow "*"
            }
        ),
    )
    rules = load_settings().sending_windows.by_country
    assert rules["FR"] == SendingWindow(MON_SAT, 9 * 60, 19 * 60 + 30, holidays_closed=True)
    assert rules["*"] == SendingWindow(frozenset(range(5)), 8 * 60, 20 * 60, False)
    # fields left out come from the configured "*"
    assert rules["DE"] == SendingWindow(frozenset({0, 2, 4, 5}), 8 * 60, 20 * 60, True)
    assert rules["BE"] == SendingWindow(frozenset({5, 6, 0}), 10 * 60, 24 * 60, False)
    assert "US" not in rules


def test_an_empty_value_means_the_built_in_windows() -> None:
    assert parse_sending_windows("  ") == DEFAULT_WINDOWS
    assert parse_sending_windows("{}") == DEFAULT_WINDOWS


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["FR"]', "must be a JSON object"),
        ('{"France": {}}', 'entry "France": not an ISO 3166-1 country code'),
        ('{"UK": {}}', 'entry "UK": "UK" is not an ISO country code: the United Kingdom is "GB"'),
        ('{"FR": "Mon-Sat"}', 'entry "FR": must be an object'),
        ('{"FR": {"hour": "08:00-20:00"}}', "entry \"FR\": unknown field 'hour'"),
        ('{"FR": {"days": "Mon-Sam"}}', "entry \"FR\": unknown day 'Sam'"),
        ('{"FR": {"days": ""}}', 'entry "FR": days names no day'),
        ('{"FR": {"days": 5}}', 'entry "FR": days must be a string'),
        ('{"FR": {"hours": "8h-20h"}}', 'entry "FR": hours must be "HH:MM-HH:MM"'),
        ('{"FR": {"hours": "20:00-08:00"}}', "entry \"FR\": hours '20:00-08:00': opening"),
        ('{"FR": {"hours": "08:00-24:30"}}', "closing at most 24:00"),
        ('{"FR": {"hours": "08:61-20:00"}}', "opening must be a time"),
        ('{"US": {"holidays": "yes"}}', 'entry "US": holidays must be "closed" or "open"'),
        ('{"*": null}', 'entry "*": the "*" window cannot be removed'),
    ],
)
def test_a_bad_window_is_refused_naming_the_variable_and_the_entry(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("SENDING_WINDOWS", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("SENDING_WINDOWS: ")
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_per_login_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_RATE_PER_LOGIN", '{"a@x.fr": 5, "b@x.fr": 20.5}')
    assert load_settings().outbound_rate_per_login == {"a@x.fr": 5.0, "b@x.fr": 20.5}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "must be a JSON object mapping login to messages/s"),
        ("{oops", "must be a JSON object mapping login to messages/s"),
        ('{"a@x.fr": 0}', 'entry "a@x.fr": must be a number of messages/s above 0, not 0'),
        ('{"a@x.fr": "fast"}', 'entry "a@x.fr": must be a number of messages/s above 0'),
        ('{"a@x.fr": true}', 'entry "a@x.fr"'),
        ('{"a@x.fr": Infinity}', 'entry "a@x.fr"'),
        ('{" ": 3}', 'entry "": a login cannot be empty'),
    ],
)
def test_a_bad_login_rate_is_refused_naming_the_variable_and_the_entry(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("OUTBOUND_RATE_PER_LOGIN", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("OUTBOUND_RATE_PER_LOGIN: ")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OUTBOUND_PACING_SECONDS", "-1"),
        ("OUTBOUND_PACING_SECONDS", "10"),
        ("DELIVERY_RECEIPT_TIMEOUT_SECONDS", "0"),
        ("DELIVERY_RECEIPT_TIMEOUT_SECONDS", "soon"),
    ],
)
def test_bad_pacing_and_timeout_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=f"^{name}: "):
        load_settings()


def test_the_receipt_timeout_must_end_before_the_lifecycle_is_forgotten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DELIVERY_RECEIPT_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("LIFECYCLE_TTL_SECONDS", "3600")
    assert load_settings().delivery_receipt_timeout_seconds == 5
    monkeypatch.setenv("DELIVERY_RECEIPT_TIMEOUT_SECONDS", "3600")
    with pytest.raises(ConfigError, match="DELIVERY_RECEIPT_TIMEOUT_SECONDS must be shorter"):
        load_settings()


def test_cli_exits_2_with_one_line_naming_sending_windows_and_the_entry(
    tmp_path: pytest.TempPathFactory,
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "SENDING_WINDOWS": '{"FR": {"days": "Mon-Sat", "hours": "08:00-20:00"}, "XX": {}}',
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "topics", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "SENDING_WINDOWS" in lines[0] and '"XX"' in lines[0]

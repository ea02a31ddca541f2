"""The outbound agent's operator knobs come from the environment (and only from it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.agents.outbound import OutboundOptions
from pipeline.settings import load_settings

KNOBS = (
    "OUTBOUND_HTTP_TIMEOUT_SECONDS",
    "OUTBOUND_MAX_ATTEMPTS",
    "OUTBOUND_MAX_CONCURRENT",
    "OUTBOUND_BREAKER_COOLDOWN_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No knob from the developer's shell, and no `.env` from the working directory."""
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_options_default_to_the_documented_values() -> None:
    options = OutboundOptions.from_settings(load_settings())
    assert (options.http_timeout, options.max_attempts) == (10.0, 4)
    assert (options.max_concurrent, options.breaker_cooldown) == (16, 60.0)
    assert options == OutboundOptions()


def test_options_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTBOUND_HTTP_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("OUTBOUND_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("OUTBOUND_MAX_CONCURRENT", "3")
    monkeypatch.setenv("OUTBOUND_BREAKER_COOLDOWN_SECONDS", "300")
    options = OutboundOptions.from_settings(load_settings())
    assert (options.http_timeout, options.max_attempts) == (2.5, 7)
    assert (options.max_concurrent, options.breaker_cooldown) == (3, 300.0)
    assert options.linger == OutboundOptions().linger  # not an operator knob


def test_a_dotenv_in_the_working_directory_is_read(
    tmp_path: Path,
) -> None:
    # the isolation above is real: a .env here would change the knobs, and the first test
    # runs in a directory without one
    (tmp_path / ".env").write_text("OUTBOUND_MAX_ATTEMPTS=9\n")
    assert OutboundOptions.from_settings(load_settings()).max_attempts == 9

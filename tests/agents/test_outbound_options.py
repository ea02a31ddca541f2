"""The outbound agent's operator knobs come from the environment."""

from __future__ import annotations

import pytest

from pipeline.agents.outbound import OutboundOptions
from pipeline.settings import load_settings


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

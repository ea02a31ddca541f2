"""`ardary-pipeline ingress`: configuration checks before serving; nothing secret printed."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline.cli import ingress as ingress_cli
from pipeline.errors import ConfigError

from .conftest import TOKEN


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def fake_serve(target: str, host: str, port: int, **kwargs: Any) -> None:
        calls.append({"target": target, "host": host, "port": port, **kwargs})

    monkeypatch.setattr(ingress_cli, "serve", fake_serve)
    monkeypatch.setattr(ingress_cli, "configure_logging", lambda: None)
    return calls


def test_missing_bootstrap_is_a_config_error_naming_the_variable(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    result = CliRunner().invoke(ingress_cli.ingress, [], standalone_mode=False)
    assert isinstance(result.exception, ConfigError)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(result.exception)
    assert served == []


def test_defaults_and_open_callbacks_warning(
    served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.delenv("PIPELINE_CALLBACK_TOKEN", raising=False)
    caplog.set_level(logging.INFO)
    result = CliRunner().invoke(ingress_cli.ingress, [], standalone_mode=False)
    assert result.exception is None, result.exception
    (call,) = served
    assert (call["host"], call["port"]) == ("0.0.0.0", 8080)
    assert call["target"] == "pipeline.ingress.app:app_from_env"
    assert any(
        r.levelno == logging.WARNING and "PIPELINE_CALLBACK_TOKEN" in r.getMessage()
        for r in caplog.records
    )


def test_token_is_never_printed_or_logged(
    served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PIPELINE_CALLBACK_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        ingress_cli.ingress, ["--host", "127.0.0.1", "--port", "9999"], standalone_mode=False
    )
    assert result.exception is None
    assert served[0]["port"] == 9999
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    assert TOKEN not in result.output
    assert all(TOKEN not in r.getMessage() and TOKEN not in str(vars(r)) for r in caplog.records)

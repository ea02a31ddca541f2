"""The client-version check of `pipeline.kafka`: unverified versions stop the command (exit 2)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.kafka.versions import OVERRIDE_ENV, VERIFIED, UnverifiedClientVersion, check_versions

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_clients_are_the_verified_ones() -> None:
    assert check_versions() == []


def test_pyproject_pins_exactly_the_verified_versions() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for distribution, version in VERIFIED.items():
        assert f'"{distribution}==' in text or f'"{distribution}[' in text, distribution
        assert f"=={version}" in text, f"{distribution} is not pinned to {version}"


def test_an_unverified_version_names_package_version_and_the_verified_one() -> None:
    installed = {**VERIFIED, "aiokafka": "0.13.0"}
    with pytest.raises(UnverifiedClientVersion) as caught:
        check_versions(installed.get, environ={})
    message = str(caught.value)
    assert "aiokafka 0.13.0 is installed" in message
    assert "aiokafka 0.14.0" in message
    assert OVERRIDE_ENV in message
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2


def test_a_missing_package_is_left_to_its_import() -> None:
    assert check_versions(lambda name: None, environ={}) == []


def test_the_override_runs_anyway_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    installed = {**VERIFIED, "kafka-python": "3.1.0"}
    with caplog.at_level(logging.WARNING, logger="pipeline.kafka"):
        mismatches = check_versions(installed.get, environ={OVERRIDE_ENV: "1"})
    assert len(mismatches) == 1
    assert "UNVERIFIED KAFKA CLIENT: kafka-python 3.1.0" in caplog.text


def test_a_command_with_an_unverified_client_exits_2_with_one_line(tmp_path: Path) -> None:
    """End to end: a fake `aiokafka 0.13.0` distribution found first on sys.path."""
    fake = tmp_path / "site"
    info = fake / "aiokafka-0.13.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: aiokafka\nVersion: 0.13.0\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if k != OVERRIDE_ENV}
    env["PYTHONPATH"] = str(fake)
    env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "topics", "list"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "ardary-pipeline: error: aiokafka 0.13.0 is installed; pipeline/kafka/ was verified "
        f"against aiokafka 0.14.0 (install that version, or set {OVERRIDE_ENV}=1 to run anyway)"
    ]

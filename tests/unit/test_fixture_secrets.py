"""The secured fixtures never print their passwords: pytest shows a fixture's repr when a test
errors in set-up, and that output lands in CI logs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from tests.conftest import Registry, SecuredCluster


def test_the_registry_fixture_hides_its_password() -> None:
    shown = repr(Registry("http://127.0.0.1:1/apis/ccompat/v7", "pipeline", "s3cret-Reg"))
    assert "s3cret-Reg" not in shown
    assert "pipeline" in shown  # the rest stays readable


def test_the_cluster_fixture_hides_the_sasl_password() -> None:
    settings = {"KAFKA_SASL_USERNAME": "ardary", "KAFKA_SASL_PASSWORD": "s3cret-Sasl"}
    command = SimpleNamespace(data_dir=Path("/tmp/cluster"))  # the repr's only use of it
    shown = repr(SecuredCluster(command=command, settings=settings))  # type: ignore[arg-type]
    assert "s3cret-Sasl" not in shown
    assert "ardary" in shown

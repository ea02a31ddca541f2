"""Settings: every contract variable, secrets masked, bad values name their variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import DEFAULT_ARDARY_BASE_URL, Settings, load_settings
from tests.environ import setting_variables

CONTRACT_VARIABLES = [
    "KAFKA_BOOTSTRAP_SERVERS",
    "SCHEMA_REGISTRY_URL",
    "PIPELINE_TOPIC_PREFIX",
    "PIPELINE_CALLBACK_TOKEN",
    "ARDARY_BASE_URL",
    "ARDARY_LOGIN",
    "ARDARY_ACCESS_KEY",
    "ARDARY_ACCESS_KEYS",
    "ARDARY_MODE",
    "ARDARY_TIMEZONE",
    "OUTBOUND_RATE_PER_SECOND",
    "OUTBOUND_MAX_BATCH",
    "WAREHOUSE_URL",
    "WAREHOUSE_PII",
    "WAREHOUSE_PII_KEY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the developer's shell or `.env` reaches these tests.

    Every ARDARY_/KAFKA_/PIPELINE_/... variable is removed (not only the contract's: a setting
    added later is covered too), and the tests run in an empty directory, so no `.env` is read.
    """
    for name in setting_variables():
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_the_isolation_covers_every_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    assert set(CONTRACT_VARIABLES) <= fields
    spelled = {name: "x" for name in fields} | {name.lower(): "x" for name in fields}
    assert set(setting_variables(spelled)) == set(spelled)
    assert setting_variables({"PATH": "/bin", "HOME": "/root", "ARDARY_KAFKA_CACHE": "c"}) == []
    assert not any(Path.cwd().iterdir())  # no .env in the working directory


def test_defaults_are_the_contracts() -> None:
    s = load_settings()
    assert s.kafka_bootstrap_servers is None
    assert s.schema_registry_url is None
    assert s.pipeline_topic_prefix == "ardary."
    assert s.pipeline_callback_token is None
    assert s.ardary_base_url == DEFAULT_ARDARY_BASE_URL == "https://www.ardary-sms.com/api"
    assert s.ardary_mode == "test"
    assert s.ardary_timezone == "Europe/Paris"
    assert s.outbound_rate_per_second == 10
    assert s.outbound_max_batch == 100
    assert s.warehouse_url == "duckdb:///./data/warehouse.duckdb"
    assert s.warehouse_pii == "raw"


def test_every_contract_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2",
        "SCHEMA_REGISTRY_URL": "http://reg:8081",
        "PIPELINE_TOPIC_PREFIX": "x.",
        "PIPELINE_CALLBACK_TOKEN": "tok-123",
        "ARDARY_BASE_URL": "http://sim/api",
        "ARDARY_LOGIN": "me@x.fr",
        "ARDARY_ACCESS_KEY": "k1",
        "ARDARY_ACCESS_KEYS": '{"other@x.fr": "k2"}',
        "ARDARY_MODE": "prod",
        "ARDARY_TIMEZONE": "America/Montreal",
        "OUTBOUND_RATE_PER_SECOND": "2.5",
        "OUTBOUND_MAX_BATCH": "7",
        "WAREHOUSE_URL": "parquet:///tmp/w",
        "WAREHOUSE_PII": "hash",
        "WAREHOUSE_PII_KEY": "pk",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.kafka_bootstrap_servers == "a:1,b:2"
    assert s.schema_registry_url == "http://reg:8081"
    assert s.pipeline_topic_prefix == "x."
    assert s.pipeline_callback_token is not None
    assert s.pipeline_callback_token.get_secret_value() == "tok-123"
    assert s.ardary_mode == "prod"
    assert s.timezone.key == "America/Montreal"
    assert s.outbound_rate_per_second == 2.5
    assert s.outbound_max_batch == 7
    assert s.access_key_for("me@x.fr") == "k1"
    assert s.access_key_for("other@x.fr") == "k2"
    assert s.access_key_for("nobody@x.fr") is None
    assert s.warehouse_pii == "hash"


def test_secrets_are_masked_in_dumps_and_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARDARY_ACCESS_KEY", "super-secret-key")
    monkeypatch.setenv("PIPELINE_CALLBACK_TOKEN", "secret-token")
    monkeypatch.setenv("ARDARY_ACCESS_KEYS", '{"a@x.fr": "other-secret"}')
    s = load_settings()
    for text in (repr(s), str(s), str(s.masked()), str(s.model_dump())):
        for secret in ("super-secret-key", "secret-token", "other-secret"):
            assert secret not in text


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OUTBOUND_RATE_PER_SECOND", "fast"),
        ("OUTBOUND_RATE_PER_SECOND", "0"),
        ("OUTBOUND_MAX_BATCH", "-1"),
        ("ARDARY_MODE", "staging"),
        ("ARDARY_TIMEZONE", "Mars/Olympus"),
        ("ARDARY_ACCESS_KEYS", "[1, 2]"),
        ("ARDARY_ACCESS_KEYS", "{not json"),
        ("WAREHOUSE_URL", "mysql://x"),
        ("WAREHOUSE_PII", "encrypt"),
        ("OUTBOUND_STATE_TTL_SECONDS", "3600"),  # shorter than sms.send-requests' retention
        ("OUTBOUND_MAX_ATTEMPTS", "0"),
        ("OUTBOUND_HTTP_TIMEOUT_SECONDS", "-1"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(variable)
    assert "\n" not in str(info.value)
    if variable == "ARDARY_ACCESS_KEYS":
        assert value not in str(info.value)  # a secret's value is never echoed back


def test_hash_pii_needs_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_PII", "hash")
    with pytest.raises(ConfigError, match="WAREHOUSE_PII_KEY"):
        load_settings()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PIPELINE_TOPIC_PREFIX=fromfile.\n")
    assert load_settings().pipeline_topic_prefix == "fromfile."


def test_cli_exits_2_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "OUTBOUND_MAX_BATCH": "many",
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
    assert "OUTBOUND_MAX_BATCH" in lines[0]
    assert "Traceback" not in done.stderr

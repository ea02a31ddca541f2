"""The cluster a benchmark runs on: its clients and subprocesses get the same security settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from pipeline.cli.bench import bench
from pipeline.devtools.bench.broker import KAFKA_CLIENT_VARIABLES, BenchCluster, bench_broker
from pipeline.errors import ConfigError
from pipeline.kafka.config import KafkaClientConfig

SECRET = "s3cret-not-in-output"


def _secured(ca: Path) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9093,127.0.0.1:9094,127.0.0.1:9095",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "ardary",
        "KAFKA_SASL_PASSWORD": SECRET,
        "KAFKA_SSL_CA_FILE": str(ca),
    }


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not read by these tests\n", encoding="utf-8")
    return path


@pytest.fixture
def clean_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KAFKA_CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_subprocess_env_carries_the_cluster_and_drops_stale_kafka_settings(
    monkeypatch: pytest.MonkeyPatch, ca_file: Path
) -> None:
    # a caller's shell still names another cluster's mechanism and a client certificate
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SSL_CERT_FILE", "/elsewhere/cert.pem")
    monkeypatch.setenv("UNRELATED_SETTING", "kept")
    env = _secured(ca_file)
    cluster = BenchCluster(KafkaClientConfig.from_env(env), env, brokers=3, local=True)
    got = cluster.subprocess_env(PIPELINE_TOPIC_PREFIX="bench.")
    assert {k: got[k] for k in env} == env
    assert "KAFKA_SSL_CERT_FILE" not in got  # not this cluster's: a worker would load it
    assert got["UNRELATED_SETTING"] == "kept"
    assert got["PIPELINE_TOPIC_PREFIX"] == "bench."

    plain = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092"}
    got = BenchCluster(KafkaClientConfig.from_env(plain), plain, 1, True).subprocess_env()
    assert not {"KAFKA_SASL_MECHANISM", "KAFKA_SSL_CERT_FILE"} & got.keys()


def test_settings_for_in_process_code_name_the_secured_cluster(
    clean_kafka_env: None, ca_file: Path
) -> None:
    env = _secured(ca_file)
    cluster = BenchCluster(KafkaClientConfig.from_env(env), env, brokers=3, local=True)
    settings = cluster.settings(pipeline_topic_prefix="bench.")
    assert KafkaClientConfig.from_settings(settings) == cluster.client
    assert settings.pipeline_topic_prefix == "bench."
    assert settings.kafka_sasl_password == SecretStr(SECRET)


def test_describe_names_brokers_protocol_and_mechanism_never_the_password(ca_file: Path) -> None:
    env = _secured(ca_file)
    cluster = BenchCluster(KafkaClientConfig.from_env(env), env, brokers=3, local=True)
    assert cluster.describe() == "3 brokers, SASL_SSL (SCRAM-SHA-512), local"
    assert SECRET not in repr(cluster)
    plain = {"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092"}
    one = BenchCluster(KafkaClientConfig.from_env(plain), plain, brokers=1, local=False)
    assert one.describe() == "1 broker, PLAINTEXT, KAFKA_BOOTSTRAP_SERVERS"


def test_a_configured_cluster_is_used_with_all_its_kafka_settings(
    monkeypatch: pytest.MonkeyPatch, clean_kafka_env: None, ca_file: Path
) -> None:
    for name, value in _secured(ca_file).items():
        monkeypatch.setenv(name, value)
    seen: list[KafkaClientConfig] = []

    def preflight(client: KafkaClientConfig) -> int:
        seen.append(client)
        return 3

    monkeypatch.setattr("pipeline.kafka.preflight.check_connection_sync", preflight)
    with bench_broker() as cluster:
        assert cluster.client.security_protocol == "SASL_SSL"
        assert cluster.client.ssl_ca_file == ca_file
        assert cluster.client.sasl_password == SecretStr(SECRET)
        assert cluster.brokers == 3 and not cluster.local
        assert dict(cluster.env) == _secured(ca_file)
    assert seen == [cluster.client]  # checked once, before any benchmark client connects


def test_local_cluster_options_with_a_configured_cluster_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    with pytest.raises(ConfigError, match="unset KAFKA_BOOTSTRAP_SERVERS"), bench_broker(nodes=3):
        pass
    with (
        pytest.raises(ConfigError, match="--nodes/--security"),
        bench_broker(security="sasl_ssl"),
    ):
        pass


def test_a_local_cluster_gets_the_nodes_and_security_asked_for(
    monkeypatch: pytest.MonkeyPatch, clean_kafka_env: None, ca_file: Path
) -> None:
    made: list[tuple[int, str]] = []

    class FakeKafka:
        def __init__(self, *, nodes: int, security: str) -> None:
            made.append((nodes, security))
            self.nodes = nodes

        def __enter__(self) -> FakeKafka:
            return self

        def __exit__(self, *exc: object) -> None:
            made.append((0, "stopped"))

        def client_settings(self) -> dict[str, str]:
            return _secured(ca_file)

    monkeypatch.setattr("pipeline.devtools.localkafka.LocalKafka", FakeKafka)
    with bench_broker(3, "sasl_ssl") as cluster:
        assert cluster.local and cluster.brokers == 3
        assert cluster.client.sasl_mechanism == "SCRAM-SHA-512"
    with bench_broker() as cluster:
        assert cluster.brokers == 1
    assert made == [(3, "sasl_ssl"), (0, "stopped"), (1, "plaintext"), (0, "stopped")]


@pytest.mark.parametrize("name", ["ingress", "outbound", "correlate", "sink", "e2e"])
def test_every_benchmark_offers_the_local_cluster_options(name: str) -> None:
    result = CliRunner().invoke(bench, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "--nodes [1|3]" in result.output
    assert "--security [plaintext|sasl_ssl]" in result.output


def test_cli_refuses_nodes_with_a_configured_cluster_in_one_line() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "sink", "--nodes", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unset KAFKA_BOOTSTRAP_SERVERS" in lines[0]


def test_one_variable_per_field_of_the_client_config() -> None:
    # a new client setting must reach the benchmark's subprocesses too
    assert len(KAFKA_CLIENT_VARIABLES) == len(KafkaClientConfig.__dataclass_fields__)

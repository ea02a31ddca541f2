"""A three-node SASL_SSL cluster as users have one: the broker command, wrong settings, topics.

- `ardary-pipeline broker --nodes 3 --security sasl_ssl` run as a user runs it (the session's
  cluster is that command): ready line, settings printed with the password masked, `client.env`
  (0600) that loads into `Settings`, a client that produces and consumes with it;
- `topics create` given one wrong setting (password, CA, SASL mechanism, registry password),
  and every long-running command given a wrong password, stops within 30 s with exit code 2 and
  one line naming the setting, never a secret, never a traceback (`pipeline.kafka.preflight`,
  `pipeline.cli.connect`);
- `topics create` on three brokers: three copies and `min.insync.replicas=2` on every topic,
  `PIPELINE_REPLICATION_FACTOR` overriding the factor.

The session's cluster and registry (`secured_cluster`, `schema_registry`, tests marked `secured`)
are shared; each test uses its own topic prefix. That no JVM outlives them is checked by the
fixtures themselves when they stop.
"""

from __future__ import annotations

import secrets
import stat
import warnings
from pathlib import Path
from uuid import uuid4

import pytest
import trustme

from pipeline.devtools.localkafka import KAFKA_VERSION
from pipeline.kafka.config import KafkaClientConfig
from pipeline.procutil import free_port
from pipeline.settings import Settings
from pipeline.topics import TOPICS
from tests.conftest import Registry, SecuredCluster
from tests.environ import setting_variables
from tests.integration.test_secured_support import (
    CommandRun,
    client_of,
    run_command,
    secured_env,
    start_command,
)
from tests.polling import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

pytestmark = pytest.mark.integration

MASK = "********** (in client.env)"


# -- the broker command ----------------------------------------------------------------------


def _produce_and_consume(config: KafkaClientConfig, topic: str) -> bytes:
    """Create `topic` (three copies), write one record with acks=all, read it back."""
    admin = KafkaAdminClient(**config.kafka_python(), client_id="secured-test")
    try:
        admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=3)], timeout_ms=30_000
        )
    finally:
        admin.close()
    value = secrets.token_bytes(16)
    producer = KafkaProducer(**config.kafka_python(), acks="all", linger_ms=0)
    try:
        producer.send(topic, key=b"k", value=value).get(timeout=30)
    finally:
        producer.close(timeout=5)
    consumer = KafkaConsumer(**config.kafka_python(), group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        got: list[bytes] = []

        def consumed() -> bool:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
            return value in got

        wait_until(consumed, 30, f"the record read back from {topic}", interval=0)
    finally:
        consumer.close()
    return value


@pytest.mark.secured
def test_broker_command_three_nodes_sasl_ssl_as_a_user_runs_it(
    secured_cluster: SecuredCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = secured_cluster.command  # `ardary-pipeline broker --nodes 3 --security sasl_ssl`
    ready, printed = command.ready, command.printed
    print(ready)  # the start time, for the record (pytest -s)
    assert ready.startswith(f"Kafka {KAFKA_VERSION} ready at 127.0.0.1:"), ready
    assert f"(data: {command.data_dir})" in ready
    jvms = command.jvms()
    assert len(jvms) == 3, f"one JVM per node, found {sorted(jvms)}"

    env_file = command.data_dir / "client.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    written = command.settings()
    password = written["KAFKA_SASL_PASSWORD"]
    shown = {key.strip(): value for key, _, value in (line.partition("=") for line in printed[:6])}
    assert shown == {**written, "KAFKA_SASL_PASSWORD": MASK}
    assert written["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert len(written["KAFKA_BOOTSTRAP_SERVERS"].split(",")) == 3
    assert printed[6] == f"client settings: {env_file}"
    assert password and password not in "\n".join([ready, *printed, *command.stderr()])

    for name in setting_variables():
        monkeypatch.delenv(name)
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == password
    config = KafkaClientConfig.from_settings(settings)
    assert _produce_and_consume(config, f"t{uuid4().hex[:8]}.roundtrip")
    # A node's death, the command's restart of it and Ctrl-C are checked with the pipeline's
    # load on it: test_secured_pipeline.py kills a partition leader's JVM, and the fixture stops
    # the command with SIGINT at the session's end (exit code 0, no JVM left, client.env kept).


# -- wrong settings --------------------------------------------------------------------------


def _other_ca(directory: Path) -> str:
    path = directory / "another-test-ca.pem"
    trustme.CA(organization_name="not the cluster's CA").cert_pem.write_to_path(str(path))
    return str(path)


def _wrong_value(setting: str, directory: Path) -> str:
    if setting == "KAFKA_SSL_CA_FILE":
        return _other_ca(directory)
    if setting == "KAFKA_SASL_MECHANISM":
        return "PLAIN"  # the cluster enables SCRAM only
    return "wrong-" + secrets.token_urlsafe(12)


def _env_with(
    cluster: SecuredCluster, registry: Registry, prefix: str, tmp_path: Path, **wrong: str
) -> dict[str, str]:
    return secured_env(
        cluster,
        registry,
        PIPELINE_TOPIC_PREFIX=prefix,
        INGRESS_SPOOL_DIR=str(tmp_path / "spool"),
        ARDARY_LOGIN="acme",
        **wrong,
    )


@pytest.mark.secured
def test_topics_create_stops_with_one_line_naming_the_wrong_setting(
    secured_cluster: SecuredCluster,
    schema_registry: Registry,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    settings = (
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CA_FILE",
        "KAFKA_SASL_MECHANISM",
        "SCHEMA_REGISTRY_PASSWORD",
    )
    wrong = {setting: _wrong_value(setting, tmp_path) for setting in settings}
    secrets_ = {
        secured_cluster.settings["KAFKA_SASL_PASSWORD"],
        schema_registry.password,
        wrong["KAFKA_SASL_PASSWORD"],
        wrong["SCHEMA_REGISTRY_PASSWORD"],
    }
    # all at once: each must still answer within the 30 s a user is promised
    started = {
        setting: start_command(
            ["topics", "create"],
            _env_with(
                secured_cluster, schema_registry, unique_prefix, tmp_path, **{setting: value}
            ),
            tmp_path,
        )
        for setting, value in wrong.items()
    }
    runs = {setting: run.finish(timeout=30) for setting, run in started.items()}
    for setting, run in runs.items():
        print(f"{setting}: {run.stderr.strip()}")  # the lines a user sees (pytest -s)
    failures = [
        f"{setting}: {why}\n{run.describe()}"
        for setting, run in runs.items()
        if (why := _why_not_one_line(run, setting, secrets_))
    ]
    assert not failures, "\n\n".join(failures)


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    return {
        "worker": [
            "worker",
            "--agents",
            "outbound",
            "--web-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "worker"),
        ],
        "ingress": ["ingress", "--host", "127.0.0.1", "--port", str(free_port())],
        "sink": [
            "sink",
            "--url",
            f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
            "--web-port",
            str(free_port()),
        ],
        "publish": ["publish", "--to", "+33612345678", "--message", "hello"],
    }


@pytest.mark.secured
def test_a_wrong_password_stops_every_long_running_command_with_one_line(
    secured_cluster: SecuredCluster,
    schema_registry: Registry,
    unique_prefix: str,
    tmp_path: Path,
) -> None:
    setting, wrong = "KAFKA_SASL_PASSWORD", _wrong_value("KAFKA_SASL_PASSWORD", tmp_path)
    env = _env_with(secured_cluster, schema_registry, unique_prefix, tmp_path, **{setting: wrong})
    secrets_ = {secured_cluster.settings[setting], schema_registry.password, wrong}
    started = {
        name: start_command(args, env, tmp_path) for name, args in _commands(tmp_path).items()
    }
    runs = {name: run.finish(timeout=30) for name, run in started.items()}
    failures = [
        f"{name}: {why}\n{run.describe()}"
        for name, run in runs.items()
        if (why := _why_not_one_line(run, setting, secrets_))
    ]
    assert not failures, "\n\n".join(failures)


def _why_not_one_line(run: CommandRun, setting: str, secrets_: set[str]) -> str | None:
    output = run.stdout + run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    if run.returncode is None:
        return "still running after 30 s"
    if run.returncode != 2:
        return f"exit code {run.returncode}, not 2"
    if "Traceback" in output:
        return "a traceback"
    if any(secret in output for secret in secrets_):
        return "a secret in the output"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr, not 1"
    if not lines[0].startswith(f"ardary-pipeline: error: {setting}"):
        return f"the line does not start by naming {setting}"
    return None


# -- topics ----------------------------------------------------------------------------------


def _replicas_and_min_isr(
    config: KafkaClientConfig, names: list[str]
) -> dict[str, tuple[set[int], str | None]]:
    """Per topic: the replica counts of its partitions and its min.insync.replicas."""
    admin = KafkaAdminClient(**config.kafka_python(), client_id="secured-test")
    try:
        described = admin.describe_topics(names)
        answer = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        )
    finally:
        admin.close()
    configs = answer.get("topic", {})
    return {
        t["name"]: (
            {len(p["replica_nodes"]) for p in t["partitions"]},
            (configs.get(t["name"], {}).get("min.insync.replicas") or {}).get("value"),
        )
        for t in described
    }


@pytest.mark.secured
def test_topics_create_on_three_brokers_keeps_three_copies_and_two_in_sync(
    secured_cluster: SecuredCluster, schema_registry: Registry, tmp_path: Path
) -> None:
    config = client_of(secured_cluster)
    default_prefix, override_prefix = f"t{uuid4().hex[:8]}.", f"t{uuid4().hex[:8]}."
    done = run_command(
        ["topics", "create"],
        secured_env(
            secured_cluster,
            schema_registry,
            PIPELINE_TOPIC_PREFIX=default_prefix,
            PIPELINE_PARTITIONS="2",
        ),
        tmp_path,
    )
    assert done.returncode == 0, done.describe()
    assert f"{len(TOPICS)} created" in done.stdout
    names = [spec.full_name(default_prefix) for spec in TOPICS]
    found = _replicas_and_min_isr(config, names)
    assert found == {name: ({3}, "2") for name in names}

    done = run_command(
        ["topics", "create"],
        secured_env(
            secured_cluster,
            PIPELINE_TOPIC_PREFIX=override_prefix,
            PIPELINE_PARTITIONS="2",
            PIPELINE_REPLICATION_FACTOR="2",
        ),
        tmp_path,
    )
    assert done.returncode == 0, done.describe()
    names = [spec.full_name(override_prefix) for spec in TOPICS]
    found = _replicas_and_min_isr(config, names)
    assert {name: copies for name, (copies, _) in found.items()} == {n: {2} for n in names}

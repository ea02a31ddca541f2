"""The local broker's plumbing without a JVM: cache, tools, configuration, ports, the pom copy."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

import pipeline.devtools.kafkajars as jars
from pipeline.devtools.kafkajars import KAFKA_VERSION, POM_XML, ensure_jars, jar_cache_dir
from pipeline.devtools.kafkanode import (
    ClusterState,
    NodePorts,
    new_cluster_id,
    render_log4j2_properties,
    render_node_properties,
)
from pipeline.devtools.localkafka import JVM_OPTIONS_VARIABLE, LocalKafka, extra_jvm_options
from pipeline.errors import BrokerError, ConfigError, EnvironmentMissing

REPO = Path(__file__).resolve().parents[2]
MARKER = f"kafka_2.13-{KAFKA_VERSION}.jar"


def _parse_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    libs = tmp_path / "cache" / "libs"
    monkeypatch.setenv("ARDARY_KAFKA_CACHE", str(libs))
    return libs


def test_embedded_pom_is_the_canonical_one() -> None:
    assert (REPO / "deploy" / "kafka-local" / "pom.xml").read_text(encoding="utf-8") == POM_XML
    assert f"<kafka.version>{KAFKA_VERSION}</kafka.version>" in POM_XML
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in POM_XML


def test_jar_cache_dir_follows_xdg_and_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ARDARY_KAFKA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jar_cache_dir() == tmp_path / "xdg" / "ardary-pipeline" / "kafka-4.1.2" / "libs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert jar_cache_dir() == tmp_path / "home" / ".cache/ardary-pipeline/kafka-4.1.2/libs"
    monkeypatch.setenv("ARDARY_KAFKA_CACHE", str(tmp_path / "mine"))
    assert jar_cache_dir() == tmp_path / "mine"


@pytest.mark.parametrize("missing", ["mvn", "java"])
def test_missing_tool_is_one_line_naming_the_alternative(
    missing: str, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_which = jars.shutil.which
    monkeypatch.setattr(jars.shutil, "which", lambda t: None if t == missing else real_which(t))
    with pytest.raises(EnvironmentMissing) as caught:
        ensure_jars()
    message = str(caught.value)
    assert "\n" not in message
    assert "KAFKA_BOOTSTRAP_SERVERS" in message
    assert "Java 17+" in message and "Maven" in message
    assert caught.value.exit_code == 2
    assert not empty_cache.exists()


def test_start_without_java_raises_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    kafka = LocalKafka(data_dir=tmp_path / "data")
    with pytest.raises(EnvironmentMissing, match="KAFKA_BOOTSTRAP_SERVERS"):
        kafka.start()
    assert not (tmp_path / "data").exists()
    assert not kafka.is_running()


def test_cached_jars_are_reused_without_maven(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_cache.mkdir(parents=True)
    (empty_cache / MARKER).write_bytes(b"")
    monkeypatch.setenv("PATH", "/nonexistent")  # neither java nor mvn would be found
    assert ensure_jars() == empty_cache


def test_failed_download_leaves_nothing_to_reuse(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "java", "exit 0")
    # Writes part of the jars, then fails as an interrupted download would.
    _fake_tool(
        bin_dir,
        "mvn",
        'for a; do case "$a" in -DoutputDirectory=*) out="${a#*=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/kafka-clients-4.1.2.jar"\n'
        'echo "[ERROR] Could not transfer artifact from central"; exit 1',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(EnvironmentMissing) as caught:
        ensure_jars()
    assert "Could not transfer artifact" in str(caught.value)
    assert "KAFKA_BOOTSTRAP_SERVERS" in str(caught.value)
    assert not empty_cache.exists()
    assert [p.name for p in empty_cache.parent.iterdir()] == [".libs.lock"]


def test_a_cache_that_cannot_be_created_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ARDARY_KAFKA_CACHE", str(blocker / "kafka" / "libs"))
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "java", "exit 0")
    _fake_tool(bin_dir, "mvn", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    with pytest.raises(ConfigError) as caught:
        ensure_jars()
    message = str(caught.value)
    assert message.startswith("ARDARY_KAFKA_CACHE: ")
    assert str(blocker / "kafka") in message
    assert "\n" not in message


def test_the_checkouts_pom_is_used_from_a_checkout(tmp_path: Path) -> None:
    assert jars._pom_path(tmp_path) == REPO / "deploy" / "kafka-local" / "pom.xml"
    assert not (tmp_path / "pom.xml").exists()  # the embedded copy is for installed wheels


def test_successful_download_is_moved_into_place(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "java", "exit 0")
    _fake_tool(
        bin_dir,
        "mvn",
        'for a; do case "$a" in -DoutputDirectory=*) out="${a#*=}";; esac; done\n'
        f'mkdir -p "$out" && touch "$out/{MARKER}" "$out/kafka-clients-4.1.2.jar"',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")
    assert ensure_jars() == empty_cache
    assert sorted(p.name for p in empty_cache.iterdir()) == sorted(
        [MARKER, "kafka-clients-4.1.2.jar"]
    )


def test_server_properties_for_a_single_node_dev_cluster(tmp_path: Path) -> None:
    ports = (NodePorts(9192, 9194, 9193),)
    props = _parse_properties(
        render_node_properties(1, ports, "plaintext", tmp_path / "logs", None)
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == (
        "CLIENT://127.0.0.1:9192,INTERNAL://127.0.0.1:9194,CONTROLLER://127.0.0.1:9193"
    )
    assert props["advertised.listeners"] == "CLIENT://127.0.0.1:9192,INTERNAL://127.0.0.1:9194"
    assert props["listener.security.protocol.map"] == (
        "CLIENT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9193"
    assert props["log.dirs"] == str(tmp_path / "logs")
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert props["min.insync.replicas"] == "1"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
    ):
        assert props[key] == "1", key


def test_server_properties_of_a_secured_three_node_cluster(tmp_path: Path) -> None:
    ports = tuple(NodePorts(9000 + 10 * i, 9001 + 10 * i, 9002 + 10 * i) for i in range(3))
    props = _parse_properties(
        render_node_properties(2, ports, "sasl_ssl", tmp_path / "logs", tmp_path / "broker.pem")
    )
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:9002,2@127.0.0.1:9012,3@127.0.0.1:9022"
    )
    assert props["listeners"].startswith("CLIENT://127.0.0.1:9010,")
    assert "CLIENT:SASL_SSL" in props["listener.security.protocol.map"]
    assert props["inter.broker.listener.name"] == "INTERNAL"
    assert props["listener.name.client.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert props["listener.name.client.ssl.keystore.location"] == str(tmp_path / "broker.pem")
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    with pytest.raises(ValueError):
        render_node_properties(1, ports, "sasl_ssl", tmp_path / "logs", None)


def test_log4j2_properties_send_warnings_to_the_data_dir(tmp_path: Path) -> None:
    props = _parse_properties(render_log4j2_properties(tmp_path / "broker.log"))
    assert props["appender.file.fileName"] == str(tmp_path / "broker.log")
    assert props["logger.kafka.level"] == "WARN"
    assert props["logger.apache.name"] == "org.apache.kafka"


def test_cluster_id_looks_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_cluster_state_round_trips_and_moves_only_a_client_port() -> None:
    state = ClusterState("id", "sasl_ssl", (NodePorts(1, 2, 3), NodePorts(4, 5, 6)), "pw")
    assert ClusterState.from_json(state.to_json()) == state
    moved = state.with_client_port(1, 19092)
    assert moved.ports == (NodePorts(19092, 2, 3), NodePorts(4, 5, 6))  # the voter set stays


def test_a_data_dir_keeps_its_ports_and_refuses_another_shape(tmp_path: Path) -> None:
    first = LocalKafka(data_dir=tmp_path)
    first._prepare()  # configuration only: no JVM
    saved = json.loads((tmp_path / "cluster.json").read_text())
    assert len(saved["ports"]) == 1 and saved["security"] == "plaintext"
    again = LocalKafka(data_dir=tmp_path, port=19092)
    again._prepare()
    ports = json.loads((tmp_path / "cluster.json").read_text())["ports"][0]
    assert ports["client"] == 19092  # an explicit port wins for the client listener
    assert ports["controller"] == saved["ports"][0]["controller"]  # the voter set does not move
    with pytest.raises(ConfigError, match=r"--data-dir: .* 1-node plaintext cluster"):
        LocalKafka(data_dir=tmp_path, nodes=3)._prepare()
    assert stat.S_IMODE((tmp_path / "cluster.json").stat().st_mode) == 0o600


def test_not_started_broker_has_no_bootstrap_and_stop_is_harmless(tmp_path: Path) -> None:
    kafka = LocalKafka(data_dir=tmp_path)
    assert not kafka.is_running()
    assert kafka.pid is None
    with pytest.raises(BrokerError):
        _ = kafka.bootstrap
    kafka.stop()
    kafka.stop()
    assert tmp_path.exists()  # a given data dir is never deleted


def test_extra_jvm_options_are_shell_words_and_a_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(JVM_OPTIONS_VARIABLE, raising=False)
    assert extra_jvm_options() == []
    monkeypatch.setenv(JVM_OPTIONS_VARIABLE, "-XX:+UseSerialGC '-Dname=a b'")
    assert extra_jvm_options() == ["-XX:+UseSerialGC", "-Dname=a b"]
    monkeypatch.setenv(JVM_OPTIONS_VARIABLE, "-Dname='unclosed")
    with pytest.raises(ConfigError, match=JVM_OPTIONS_VARIABLE):
        extra_jvm_options()

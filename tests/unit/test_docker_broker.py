"""The Docker-run tests' broker is configured like the local one (no Docker engine needed here)."""

from __future__ import annotations

from pipeline.devtools.localkafka import KAFKA_VERSION
from tests.docker_broker import KAFKA_IMAGE, container_env


def test_the_image_is_apache_kafka_of_the_local_brokers_version() -> None:
    assert KAFKA_IMAGE.split(":") == ["apache/kafka", KAFKA_VERSION]


def test_the_container_gets_the_local_brokers_settings_and_its_own_listeners() -> None:
    env = container_env(19092)
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR"] == "1"
    assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:19092,CONTROLLER://:9093"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://localhost:19092"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "CONTROLLER:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "PLAINTEXT"
    # the host's paths do not go into the container
    assert "KAFKA_LOG_DIRS" not in env
    assert all(name.startswith("KAFKA_") and "." not in name for name in env)

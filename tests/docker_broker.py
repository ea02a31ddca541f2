"""The tests' broker in Docker: Apache Kafka's own image, the version and settings of LocalKafka.

Used by `tests/conftest.py` when a Docker engine answers. testcontainers' `KafkaContainer` (4.x)
drives the Confluent image's start scripts only, so this is a plain `DockerContainer` configured
the way the apache/kafka image reads its settings: each `server.properties` key as an
environment variable (`KAFKA_` + the key upper-cased, dots as underscores). The settings are
LocalKafka's single node (`render_node_properties`), except the listeners (the container binds
every interface, advertises the published port, and needs no inter-broker listener of its
own). No Docker engine runs where this was written: the unit
test checks the configuration, not a container.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

from pipeline.devtools.kafkanode import NodePorts, render_node_properties
from pipeline.devtools.localkafka import KAFKA_VERSION
from pipeline.procutil import free_port
from tests.polling import wait_until

__all__ = ["KAFKA_IMAGE", "container_broker", "container_env"]

KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
_CONTROLLER_PORT = 9093
_NOT_FROM_LOCAL = {
    "listeners",
    "advertised.listeners",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "controller.quorum.voters",
}
_IMAGE_OWN = {"log.dirs"}  # the image keeps its data where its volume is


def container_env(port: int) -> dict[str, str]:
    """The apache/kafka image's environment for a broker published on `localhost:port`."""
    ports = (NodePorts(port, port + 1, _CONTROLLER_PORT),)
    text = render_node_properties(1, ports, "plaintext", Path("/unused"), None)
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    env = {
        "KAFKA_" + key.upper().replace(".", "_"): value
        for key, value in props.items()
        if key not in _NOT_FROM_LOCAL | _IMAGE_OWN
    }
    env.update(
        KAFKA_LISTENERS=f"PLAINTEXT://:{port},CONTROLLER://:{_CONTROLLER_PORT}",
        KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://localhost:{port}",
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        KAFKA_INTER_BROKER_LISTENER_NAME="PLAINTEXT",
        KAFKA_CONTROLLER_QUORUM_VOTERS=f"1@localhost:{_CONTROLLER_PORT}",
    )
    return env


@contextlib.contextmanager
def container_broker(timeout: float = 120.0) -> Iterator[str]:
    """Run the broker container; yield its bootstrap address once the broker has started.

    The broker port is published on the same host port, so the address the broker advertises
    is the one clients reach (a free port picked here: a race with another process is
    possible, and would fail the start loudly).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from testcontainers.core.container import DockerContainer

    port = free_port()
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(port, port)
    for name, value in container_env(port).items():
        container.with_env(name, value)
    with container:
        wait_until(
            lambda: any(b"Kafka Server started" in out for out in container.get_logs()),
            timeout,
            f"the {KAFKA_IMAGE} container to start",
            interval=0.5,
        )
        yield f"localhost:{port}"

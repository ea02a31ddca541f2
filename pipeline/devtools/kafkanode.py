"""What a local Kafka node is configured with: ports, cluster state, server.properties (pure).

`LocalKafka` runs one node or three; each is broker and controller at once (the controllers
form a static quorum). Clients connect to the `CLIENT` listener (plaintext, or SASL_SSL with
SCRAM), brokers to each other over `INTERNAL` (plaintext, loopback) and controllers over
`CONTROLLER`. The ports, the cluster id and the SCRAM password of a data directory are chosen
once and kept in `cluster.json`, so a restarted node keeps its addresses (the voter set records
the controller ports) and clients their settings.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

__all__ = [
    "CLIENT_MECHANISM",
    "HOST",
    "SCRAM_MECHANISMS",
    "SCRAM_USER",
    "ClusterState",
    "NodePorts",
    "Security",
    "new_cluster_id",
    "render_log4j2_properties",
    "render_node_properties",
]

Security = Literal["plaintext", "sasl_ssl"]

HOST = "127.0.0.1"
SCRAM_USER = "ardary"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")  # PLAIN is refused
CLIENT_MECHANISM = "SCRAM-SHA-512"


def new_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` makes it, without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that read like a command-line flag
            return text


@dataclass(frozen=True, slots=True)
class NodePorts:
    """The three listeners of one node."""

    client: int
    internal: int
    controller: int


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What a data directory was formatted for (`cluster.json`): kept across restarts."""

    cluster_id: str
    security: Security
    ports: tuple[NodePorts, ...]
    password: str

    def with_client_port(self, node_id: int, port: int) -> ClusterState:
        """The same cluster with node `node_id`'s client port moved (its controller port may
        not move: the voter set records it)."""
        ports = list(self.ports)
        ports[node_id - 1] = replace(ports[node_id - 1], client=port)
        return replace(self, ports=tuple(ports))

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ports": [asdict(p) for p in self.ports]})

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        return cls(
            raw["cluster_id"],
            raw["security"],
            tuple(NodePorts(**p) for p in raw["ports"]),
            raw["password"],
        )


def render_node_properties(
    node_id: int,
    ports: tuple[NodePorts, ...],
    security: Security,
    log_dir: Path,
    tls_pem: Path | None,
) -> str:
    """server.properties of node `node_id` (1-based) of a cluster of `len(ports)` nodes.

    Topics are never created implicitly (the pipeline provisions its own), a new consumer group
    rebalances at once instead of after 3 s, and from three nodes on internal topics are
    replicated three times and every topic needs two in-sync replicas, as in production.
    """
    nodes = len(ports)
    mine = ports[node_id - 1]
    replication = min(3, nodes)
    client_protocol = "SASL_SSL" if security == "sasl_ssl" else "PLAINTEXT"
    voters = ",".join(f"{i}@{HOST}:{p.controller}" for i, p in enumerate(ports, start=1))
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"CLIENT://{HOST}:{mine.client},INTERNAL://{HOST}:{mine.internal},"
            f"CONTROLLER://{HOST}:{mine.controller}"
        ),
        "advertised.listeners": f"CLIENT://{HOST}:{mine.client},INTERNAL://{HOST}:{mine.internal}",
        "listener.security.protocol.map": (
            f"CLIENT:{client_protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(2, replication)),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min(2, replication)),
        "default.replication.factor": str(replication),
        "min.insync.replicas": "2" if nodes >= 3 else "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    if security == "sasl_ssl":
        if tls_pem is None:
            raise ValueError("a SASL_SSL node needs its TLS key and certificate")
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        settings |= {
            "listener.name.client.sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "listener.name.client.scram-sha-256.sasl.jaas.config": jaas,
            "listener.name.client.scram-sha-512.sasl.jaas.config": jaas,
            "listener.name.client.ssl.keystore.type": "PEM",
            "listener.name.client.ssl.keystore.location": str(tls_pem),
        }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def render_log4j2_properties(log_file: Path) -> str:
    """Log4j 2 configuration: warnings and errors of the broker into `log_file`, nothing else."""
    return (
        "status = warn\n"
        "appender.file.type = File\n"
        "appender.file.name = FILE\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.file.ref = FILE\n"
        "logger.kafka.name = kafka\n"
        "logger.kafka.level = WARN\n"
        "logger.apache.name = org.apache.kafka\n"
        "logger.apache.level = WARN\n"
    )

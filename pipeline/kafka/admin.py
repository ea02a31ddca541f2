"""Topic provisioning (kafka-python admin): create the pipeline's topics, describe them.

Replication follows the cluster: `min(3, brokers)` copies of every partition, and from three
brokers on `min.insync.replicas=2`, so an acknowledged record survives losing one broker and a
write is refused (the ingress then spools) rather than kept on a single copy.
`PIPELINE_REPLICATION_FACTOR` overrides the factor (e.g. a two-broker cluster that must use 2).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.kafka.config import KafkaClientConfig, client_config
from pipeline.kafka.errors import kafka_errors
from pipeline.topics import TOPICS, TopicSpec

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

__all__ = [
    "TopicState",
    "broker_count",
    "describe_topics",
    "ensure_topics",
    "replication_for",
    "topic_configs",
]


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    config: Mapping[str, str]
    replication: int = 0


def _admin(client: KafkaClientConfig | str) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient

    config = client_config(client)
    with kafka_errors(f"cannot reach Kafka at {config.bootstrap}"):
        return KafkaAdminClient(
            **config.kafka_python(),
            client_id="ardary-topics",
            request_timeout_ms=15_000,
        )


def replication_for(brokers: int, override: int | None = None) -> int:
    """The replication factor of the pipeline's topics on a cluster of `brokers` brokers."""
    return override if override is not None else max(1, min(3, brokers))


def topic_configs(spec: TopicSpec, replication: int) -> dict[str, str]:
    """A topic's configs as created: its own, plus `min.insync.replicas=2` from 3 copies."""
    configs = dict(spec.config)
    if replication >= 3:
        configs["min.insync.replicas"] = "2"
    return configs


def broker_count(client: KafkaClientConfig | str) -> int:
    """How many brokers the cluster lists."""
    admin = _admin(client)
    try:
        with kafka_errors("cannot describe the cluster"):
            return len(admin.describe_cluster().get("brokers") or ())
    finally:
        admin.close()


def ensure_topics(
    client: KafkaClientConfig | str,
    prefix: str,
    partitions: int,
    replication: int | None = None,
) -> list[str]:
    """Create the missing topics; existing ones are left as they are. Returns those created.

    Idempotent: running it twice creates nothing the second time and changes nothing.
    A topic that exists with another partition count than its co-partitioned siblings is
    reported as a ConfigError, because correlation would silently miss events. `replication`
    (PIPELINE_REPLICATION_FACTOR) overrides the factor `replication_for` picks.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(client)
    try:
        with kafka_errors("topic provisioning failed", detail=True):
            brokers = len(admin.describe_cluster().get("brokers") or ())
            factor = replication_for(brokers, replication)
            if factor > brokers:
                raise ConfigError(
                    f"PIPELINE_REPLICATION_FACTOR: {factor} copies need {factor} brokers, the "
                    f"cluster has {brokers}"
                )
            existing = set(admin.list_topics())
            wanted = [
                NewTopic(
                    name=spec.full_name(prefix),
                    num_partitions=partitions,
                    replication_factor=factor,
                    topic_configs=topic_configs(spec, factor),
                )
                for spec in TOPICS
                if spec.full_name(prefix) not in existing
            ]
            created: list[str] = []
            for topic in wanted:
                try:
                    admin.create_topics([topic])
                    created.append(topic.name)
                except TopicAlreadyExistsError:
                    pass  # created concurrently by another process: fine
            states = _wait_visible(admin, prefix, created, factor)
    finally:
        admin.close()
    counts = {
        states[spec.full_name(prefix)].partitions
        for spec in TOPICS
        if spec.co_partitioned and spec.full_name(prefix) in states
    }
    if len(counts) > 1:
        raise ConfigError(
            f"PIPELINE_PARTITIONS: topics keyed by id_sms_api under {prefix!r} have different "
            f"partition counts {sorted(counts)}; they must be equal"
        )
    return created


def _wait_visible(
    admin: KafkaAdminClient, prefix: str, created: list[str], factor: int, timeout: float = 30.0
) -> dict[str, TopicState]:
    """Wait until new topics show their partitions and configs (metadata propagates async)."""
    wanted = {spec.full_name(prefix): topic_configs(spec, factor) for spec in TOPICS}
    deadline = time.monotonic() + timeout
    while True:
        states = {s.name: s for s in _describe(admin, prefix)}
        pending = [
            name
            for name in created
            if name not in states
            or states[name].partitions == 0
            or any(states[name].config.get(k) != v for k, v in wanted[name].items())
        ]
        if not pending or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def _describe(admin: KafkaAdminClient, prefix: str) -> list[TopicState]:
    from kafka.admin import ConfigResource, ConfigResourceType

    names = [spec.full_name(prefix) for spec in TOPICS]
    present = set(admin.list_topics())
    names = [n for n in names if n in present]
    if not names:
        return []
    described = admin.describe_topics(names)
    partitions = {t["name"]: len(t["partitions"]) for t in described}
    replicas = {
        t["name"]: min((len(p["replica_nodes"]) for p in t["partitions"]), default=0)
        for t in described
    }
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    answer = admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {n: {} for n in names}
    for name, entries in answer.get("topic", {}).items():
        for key, entry in entries.items():
            if entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG":
                configs[name][key] = str(entry["value"])
    return [TopicState(n, partitions.get(n, 0), configs[n], replicas.get(n, 0)) for n in names]


def describe_topics(client: KafkaClientConfig | str, prefix: str) -> list[TopicState]:
    """The pipeline's topics as they are on the broker (missing ones are left out)."""
    admin = _admin(client)
    try:
        with kafka_errors("cannot describe topics", detail=True):
            return _describe(admin, prefix)
    finally:
        admin.close()

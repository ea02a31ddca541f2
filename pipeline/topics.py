"""THE table of streams: every topic's name, key, record, partitions and configs.

A reader sees here every stream that connects the stages. Topics keyed by `id_sms_api` share one
partition count, so a message's request, result, status and clicks land in the same partition
number and the correlation table needs no repartition (`group_by`) hop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline import records
from pipeline.errors import BrokerError, ConfigError

if TYPE_CHECKING:
    from kafka.admin import KafkaAdminClient

__all__ = [
    "TOPICS",
    "TopicSpec",
    "TopicState",
    "describe_topics",
    "ensure_topics",
    "metrics_key",
    "record_key",
    "spec_for",
    "topic_for_record",
]

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One stream of the pipeline; `name` is the part after PIPELINE_TOPIC_PREFIX."""

    name: str
    record: type[records.Record]
    key: str
    co_partitioned: bool
    config: Mapping[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


def _retain(days: int) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}


_COMPACT = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(60_000)}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("sms.send-requests", records.SendRequest, "id_sms_api", True, _retain(7)),
    TopicSpec("sms.send-results", records.SendResult, "id_sms_api", True, _retain(30)),
    TopicSpec(
        "contacts.sync-requests", records.ContactSyncRequest, "phone_number", False, _retain(7)
    ),
    TopicSpec(
        "contacts.sync-results", records.ContactSyncResult, "phone_number", False, _retain(30)
    ),
    TopicSpec("callbacks.status", records.StatusCallback, "id_sms_api", True, _retain(30)),
    TopicSpec("callbacks.clicks", records.ClickCallback, "id_sms_api", True, _retain(30)),
    TopicSpec("callbacks.incoming-sms", records.IncomingSms, "from_number", False, _retain(30)),
    TopicSpec("callbacks.calls", records.CallEvent, "phone_number", False, _retain(30)),
    TopicSpec(
        "callbacks.qualifications", records.CallQualification, "phone_number", False, _retain(30)
    ),
    TopicSpec("callbacks.dead-letter", records.DeadLetter, "none", False, _retain(90)),
    TopicSpec("sms.lifecycle", records.SmsLifecycle, "id_sms_api", True, _COMPACT),
    TopicSpec(
        "metrics.sms",
        records.SmsMetricsWindow,
        "window+login",
        False,
        {"cleanup.policy": "compact,delete", "retention.ms": str(90 * DAY_MS)},
    ),
    TopicSpec("sms.optouts", records.OptOut, "phone_number", False, _COMPACT),
)

_BY_RECORD: dict[type[records.Record], TopicSpec] = {spec.record: spec for spec in TOPICS}
_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def spec_for(name: str) -> TopicSpec:
    """The spec of a topic by its unprefixed name (e.g. `sms.lifecycle`)."""
    return _BY_NAME[name]


def topic_for_record(record_type: type[records.Record]) -> TopicSpec:
    """The one topic that carries records of this type."""
    return _BY_RECORD[record_type]


def metrics_key(window: str, window_start: datetime, login: str) -> bytes:
    """Key of a metrics window: the latest record per (window, start, login) is the truth."""
    return f"{window}|{window_start.isoformat()}|{login}".encode()


def record_key(record: records.Record) -> bytes | None:
    """The Kafka key of a record, as the contract's topic table says.

    A status or click without `id_sms_api` is keyed by its phone number instead (and carries
    the MISSING_ID_SMS_API flag), so it is still published and still ordered per phone.
    """
    if isinstance(record, records.DeadLetter):
        return None
    if isinstance(record, records.SmsMetricsWindow):
        return metrics_key(record.window, record.window_start, record.login)
    if isinstance(record, records.StatusCallback | records.ClickCallback):
        return (record.id_sms_api or record.phone_number).encode()
    spec = _BY_RECORD[type(record)]
    value = getattr(record, spec.key)
    return str(value).encode()


@dataclass(frozen=True, slots=True)
class TopicState:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    config: Mapping[str, str]


def _admin(bootstrap: str) -> KafkaAdminClient:
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap.split(","),
            client_id="ardary-topics",
            request_timeout_ms=15_000,
        )
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {type(exc).__name__}") from exc


def ensure_topics(bootstrap: str, prefix: str, partitions: int) -> list[str]:
    """Create the missing topics; existing ones are left as they are. Returns those created.

    Idempotent: running it twice creates nothing the second time and changes nothing.
    A topic that exists with another partition count than its co-partitioned siblings is
    reported as a ConfigError, because correlation would silently miss events.
    """
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    admin = _admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.full_name(prefix),
                num_partitions=partitions,
                replication_factor=-1,
                topic_configs=dict(spec.config),
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
        states = _wait_visible(admin, prefix, created)
    except KafkaError as exc:
        raise BrokerError(f"topic provisioning failed: {type(exc).__name__}: {exc}") from exc
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
    admin: KafkaAdminClient, prefix: str, created: list[str], timeout: float = 30.0
) -> dict[str, TopicState]:
    """Wait until new topics show their partitions and configs (metadata propagates async)."""
    wanted = {spec.full_name(prefix): spec for spec in TOPICS}
    deadline = time.monotonic() + timeout
    while True:
        states = {s.name: s for s in _describe(admin, prefix)}
        pending = [
            name
            for name in created
            if name not in states
            or states[name].partitions == 0
            or any(states[name].config.get(k) != v for k, v in wanted[name].config.items())
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
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    answer = admin.describe_configs(resources)
    configs: dict[str, dict[str, str]] = {n: {} for n in names}
    for name, entries in answer.get("topic", {}).items():
        for key, entry in entries.items():
            if entry.get("config_source") == "DYNAMIC_TOPIC_CONFIG":
                configs[name][key] = str(entry["value"])
    return [TopicState(n, partitions.get(n, 0), configs[n]) for n in names]


def describe_topics(bootstrap: str, prefix: str) -> list[TopicState]:
    """The pipeline's topics as they are on the broker (missing ones are left out)."""
    from kafka.errors import KafkaError

    admin = _admin(bootstrap)
    try:
        return _describe(admin, prefix)
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topics: {type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()

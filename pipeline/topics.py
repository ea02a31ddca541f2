"""THE table of streams: every topic's name, key, record, partitions and configs.

A reader sees here every stream that connects the stages. Topics keyed by `id_sms_api` share one
partition count, so a message's request, result, status and clicks land in the same partition
number and the correlation table needs no repartition (`group_by`) hop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pipeline import records

__all__ = [
    "TOPICS",
    "TopicSpec",
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

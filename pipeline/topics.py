"""THE table of streams: every topic's name, record, key, partitioning, configs and sink table.

A reader sees here every stream that connects the stages, and each row says everything the code
needs to know about one topic: the record it carries, how a record is keyed (a function, so the
ingress, the agents and the publishers key a record the same way), whether its partitions line
up with the other `id_sms_api` topics, its broker configs, and whether and how the warehouse sink
loads it. Adding a stream is one row here (plus its record, its `.avsc` and whatever produces it).

Topics keyed by `id_sms_api` share one partition count, so a message's request, result, status
and clicks land in the same partition number and the correlation table needs no repartition
(`group_by`) hop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any, Literal, TypeAlias

from pipeline import records

__all__ = [
    "BY_ID_ELSE_PHONE",
    "BY_ID_SMS_API",
    "BY_PHONE",
    "BY_SENDER",
    "BY_WINDOW",
    "TOPICS",
    "UNKEYED",
    "WAREHOUSE_TOPICS",
    "RecordKey",
    "TopicSpec",
    "WarehouseTable",
    "WriteMode",
    "field_key",
    "metrics_key",
    "record_key",
    "spec_for",
    "topic_for_record",
]

DAY_MS = 24 * 3600 * 1000

WriteMode: TypeAlias = Literal["upsert", "ignore"]


@dataclass(frozen=True, slots=True)
class RecordKey:
    """How a topic's records are keyed: `of(record)` is the Kafka key; `label` names it for people.

    `of` takes a record of the topic's type (typed as `Any` here because one table holds every
    record type; `tests/unit/test_topics.py` runs every key on a record of its topic).
    """

    label: str
    of: Callable[[Any], bytes | None]


@dataclass(frozen=True, slots=True)
class WarehouseTable:
    """How the warehouse sink loads a topic: its table, primary key, conflict rule and event time.

    `upsert`: the latest record of a key wins (compacted, one-row-per-key streams); `ignore`: the
    first copy wins (events de-duplicated by `event_id`, so a redelivered callback is harmless).
    `time_column` is the record's event time: Parquet files are partitioned by its UTC day.
    The columns themselves come from the record's Avro schema (`pipeline.sinks.schema_ddl`).
    """

    table: str
    primary_key: tuple[str, ...]
    mode: WriteMode
    time_column: str


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One stream of the pipeline; `name` is the part after PIPELINE_TOPIC_PREFIX.

    `warehouse` is None for topics the sink does not load (requests, contact syncs).
    """

    name: str
    record: type[records.Record]
    key: RecordKey
    co_partitioned: bool
    config: Mapping[str, str] = field(default_factory=dict)
    warehouse: WarehouseTable | None = None

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


def field_key(name: str) -> RecordKey:
    """Records keyed by one field, as text (`str(record.<name>)`, UTF-8)."""
    get = attrgetter(name)

    def key(record: Any) -> bytes:
        return str(get(record)).encode()

    return RecordKey(name, key)


def metrics_key(window: str, window_start: datetime, login: str) -> bytes:
    """Key of a metrics window: the latest record per (window, start, login) is the truth."""
    return f"{window}|{window_start.isoformat()}|{login}".encode()


def _id_else_phone(record: records.StatusCallback | records.ClickCallback) -> bytes:
    # A status or click without `id_sms_api` (flagged MISSING_ID_SMS_API) is keyed by its phone
    # number instead: still published, still ordered per phone.
    return (record.id_sms_api or record.phone_number).encode()


def _window_key(record: records.SmsMetricsWindow) -> bytes:
    return metrics_key(record.window, record.window_start, record.login)


def _unkeyed(record: records.DeadLetter) -> None:
    return None  # dead letters are spread over the partitions: no order to keep


BY_ID_SMS_API = field_key("id_sms_api")
BY_ID_ELSE_PHONE = RecordKey("id_sms_api", _id_else_phone)
BY_PHONE = field_key("phone_number")
BY_SENDER = field_key("from_number")
BY_WINDOW = RecordKey("window+login", _window_key)
UNKEYED = RecordKey("none", _unkeyed)


def _retain(days: int) -> dict[str, str]:
    return {"cleanup.policy": "delete", "retention.ms": str(days * DAY_MS)}


_COMPACT = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(60_000)}
_COMPACT_AND_RETAIN_90 = {"cleanup.policy": "compact,delete", "retention.ms": str(90 * DAY_MS)}


def _events(table: str) -> WarehouseTable:
    """A table of events: one row per `event_id`, the first copy wins."""
    return WarehouseTable(table, ("event_id",), "ignore", "received_at")


def _latest(table: str, *primary_key: str, at: str) -> WarehouseTable:
    """A table of current states: one row per key, the latest record wins."""
    return WarehouseTable(table, primary_key, "upsert", at)


# fmt: off
TOPICS: tuple[TopicSpec, ...] = (
    #          name, record, key, co-partitioned, configs, [warehouse table]
    TopicSpec("sms.send-requests", records.SendRequest, BY_ID_SMS_API, True, _retain(7)),
    TopicSpec("sms.send-results", records.SendResult, BY_ID_SMS_API, True, _retain(30),
              _latest("sms_send_results", "id_sms_api", at="completed_at")),
    TopicSpec("contacts.sync-requests", records.ContactSyncRequest, BY_PHONE, False, _retain(7)),
    TopicSpec("contacts.sync-results", records.ContactSyncResult, BY_PHONE, False, _retain(30)),
    TopicSpec("callbacks.status", records.StatusCallback, BY_ID_ELSE_PHONE, True, _retain(30),
              _events("callbacks_status")),
    TopicSpec("callbacks.clicks", records.ClickCallback, BY_ID_ELSE_PHONE, True, _retain(30),
              _events("callbacks_clicks")),
    TopicSpec("callbacks.incoming-sms", records.IncomingSms, BY_SENDER, False, _retain(30),
              _events("callbacks_incoming_sms")),
    TopicSpec("callbacks.calls", records.CallEvent, BY_PHONE, False, _retain(30),
              _events("callbacks_calls")),
    TopicSpec("callbacks.qualifications", records.CallQualification, BY_PHONE, False, _retain(30),
              _events("callbacks_qualifications")),
    TopicSpec("callbacks.dead-letter", records.DeadLetter, UNKEYED, False, _retain(90),
              _events("dead_letters")),
    TopicSpec("sms.lifecycle", records.SmsLifecycle, BY_ID_SMS_API, True, _COMPACT,
              _latest("sms_lifecycle", "id_sms_api", at="updated_at")),
    TopicSpec("metrics.sms", records.SmsMetricsWindow, BY_WINDOW, False, _COMPACT_AND_RETAIN_90,
              _latest("metrics_sms", "window", "window_start", "login", at="window_start")),
    TopicSpec("sms.optouts", records.OptOut, BY_PHONE, False, _COMPACT,
              _latest("sms_optouts", "phone_number", at="at")),
)
# fmt: on

WAREHOUSE_TOPICS: tuple[TopicSpec, ...] = tuple(s for s in TOPICS if s.warehouse is not None)
"""The topics the warehouse sink consumes, in table order."""

_BY_RECORD: dict[type[records.Record], TopicSpec] = {spec.record: spec for spec in TOPICS}
_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}
_KEY_OF: dict[type[records.Record], Callable[[Any], bytes | None]] = {
    spec.record: spec.key.of for spec in TOPICS
}
if len(_BY_RECORD) != len(TOPICS) or len(_BY_NAME) != len(TOPICS):
    raise ValueError("pipeline.topics: each record type and each name must have exactly one row")


def spec_for(name: str) -> TopicSpec:
    """The spec of a topic by its unprefixed name (e.g. `sms.lifecycle`)."""
    return _BY_NAME[name]


def topic_for_record(record_type: type[records.Record]) -> TopicSpec:
    """The one topic that carries records of this type."""
    return _BY_RECORD[record_type]


def record_key(record: records.Record) -> bytes | None:
    """The Kafka key of a record: its topic's key function (one dict lookup, then the call)."""
    return _KEY_OF[type(record)](record)

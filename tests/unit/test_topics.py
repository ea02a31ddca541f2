"""The topic table: names, keys, co-partitioning, compaction and warehouse tables, as deployed."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime

import pytest

from pipeline import records
from pipeline.topics import (
    TOPICS,
    WAREHOUSE_TOPICS,
    TopicSpec,
    metrics_key,
    record_key,
    spec_for,
    topic_for_record,
)
from tests.unit.test_serde import samples

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_topic_names() -> None:
    assert [t.name for t in TOPICS] == [
        "sms.send-requests",
        "sms.send-results",
        "contacts.sync-requests",
        "contacts.sync-results",
        "callbacks.status",
        "callbacks.clicks",
        "callbacks.incoming-sms",
        "callbacks.calls",
        "callbacks.qualifications",
        "callbacks.dead-letter",
        "sms.lifecycle",
        "metrics.sms",
        "sms.optouts",
    ]
    assert spec_for("sms.lifecycle").full_name("ardary.") == "ardary.sms.lifecycle"


def test_every_record_type_has_exactly_one_topic() -> None:
    assert sorted(t.record.__name__ for t in TOPICS) == sorted(
        c.__name__ for c in records.RECORD_TYPES
    )


def test_id_keyed_topics_are_the_co_partitioned_ones() -> None:
    co = {t.name for t in TOPICS if t.co_partitioned}
    assert co == {
        "sms.send-requests",
        "sms.send-results",
        "callbacks.status",
        "callbacks.clicks",
        "sms.lifecycle",
    }
    assert all(t.key.label == "id_sms_api" for t in TOPICS if t.co_partitioned)


def test_key_labels_as_topics_list_prints_them() -> None:
    assert {t.name: t.key.label for t in TOPICS} == {
        "sms.send-requests": "id_sms_api",
        "sms.send-results": "id_sms_api",
        "contacts.sync-requests": "phone_number",
        "contacts.sync-results": "phone_number",
        "callbacks.status": "id_sms_api",
        "callbacks.clicks": "id_sms_api",
        "callbacks.incoming-sms": "from_number",
        "callbacks.calls": "phone_number",
        "callbacks.qualifications": "phone_number",
        "callbacks.dead-letter": "none",
        "sms.lifecycle": "id_sms_api",
        "metrics.sms": "window+login",
        "sms.optouts": "phone_number",
    }


def test_configs() -> None:
    day = 24 * 3600 * 1000
    retention = {
        t.name: int(t.config["retention.ms"]) // day for t in TOPICS if "retention.ms" in t.config
    }
    assert retention == {
        "sms.send-requests": 7,
        "sms.send-results": 30,
        "contacts.sync-requests": 7,
        "contacts.sync-results": 30,
        "callbacks.status": 30,
        "callbacks.clicks": 30,
        "callbacks.incoming-sms": 30,
        "callbacks.calls": 30,
        "callbacks.qualifications": 30,
        "callbacks.dead-letter": 90,
        "metrics.sms": 90,
    }
    compacted = {t.name for t in TOPICS if t.config.get("cleanup.policy") == "compact"}
    assert compacted == {"sms.lifecycle", "sms.optouts"}
    assert spec_for("sms.lifecycle").config["min.compaction.lag.ms"] == "60000"
    assert spec_for("metrics.sms").config["cleanup.policy"] == "compact,delete"


def test_record_keys() -> None:
    req = records.SendRequest("id-9", "u", "+33612345678", "m", T0)
    assert record_key(req) == b"id-9"
    status = records.StatusCallback("e", "+33612345678", "sent", T0, "{}", id_sms_api="id-9")
    assert record_key(status) == b"id-9"
    orphan = records.StatusCallback("e", "+33612345678", "sent", T0, "{}")
    assert record_key(orphan) == b"+33612345678"  # no id: keyed by phone, still published
    click = records.ClickCallback("e", "+33612345678", T0, "{}")
    assert record_key(click) == b"+33612345678"
    sms = records.IncomingSms("e", "+33611111111", "hi", T0, "{}")
    assert record_key(sms) == b"+33611111111"
    dead = records.DeadLetter("e", "r", "d", "GET", b"", T0)
    assert record_key(dead) is None
    window = records.SmsMetricsWindow(T0, T0, "u@x", window="1h")
    assert record_key(window) == b"1h|2026-01-01T00:00:00+00:00|u@x"
    assert record_key(window) == metrics_key("1h", T0, "u@x")
    assert metrics_key("1h", T0, "u@x") != metrics_key("1m", T0, "u@x")
    assert topic_for_record(records.OptOut).name == "sms.optouts"


# The keys as they were before each topic carried its key function (an isinstance chain over
# field names): the new functions must give byte-identical keys, or co-partitioning and the
# compacted topics' "latest per key" would change under running deployments.
_KEY_FIELD_BEFORE = {
    records.SendRequest: "id_sms_api",
    records.SendResult: "id_sms_api",
    records.ContactSyncRequest: "phone_number",
    records.ContactSyncResult: "phone_number",
    records.IncomingSms: "from_number",
    records.CallEvent: "phone_number",
    records.CallQualification: "phone_number",
    records.SmsLifecycle: "id_sms_api",
    records.OptOut: "phone_number",
}


def _key_before(record: records.Record) -> bytes | None:
    if isinstance(record, records.DeadLetter):
        return None
    if isinstance(record, records.SmsMetricsWindow):
        start = record.window_start.isoformat()
        return f"{record.window}|{start}|{record.login}".encode()
    if isinstance(record, records.StatusCallback | records.ClickCallback):
        return (record.id_sms_api or record.phone_number).encode()
    return str(getattr(record, _KEY_FIELD_BEFORE[type(record)])).encode()


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_every_topic_keys_its_records_as_before(record: records.Record) -> None:
    assert record_key(record) == _key_before(record)
    assert topic_for_record(type(record)).key.of(record) == record_key(record)


def test_the_reference_covers_every_record_type() -> None:
    assert {type(r) for r in samples()} == set(records.RECORD_TYPES)


def test_warehouse_tables() -> None:
    # record → (table, primary key, write mode, time column): what the warehouses hold today
    assert {
        t.record.__name__: (w.table, w.primary_key, w.mode, w.time_column)
        for t in TOPICS
        if (w := t.warehouse) is not None
    } == {
        "SmsLifecycle": ("sms_lifecycle", ("id_sms_api",), "upsert", "updated_at"),
        "SendResult": ("sms_send_results", ("id_sms_api",), "upsert", "completed_at"),
        "StatusCallback": ("callbacks_status", ("event_id",), "ignore", "received_at"),
        "ClickCallback": ("callbacks_clicks", ("event_id",), "ignore", "received_at"),
        "IncomingSms": ("callbacks_incoming_sms", ("event_id",), "ignore", "received_at"),
        "CallEvent": ("callbacks_calls", ("event_id",), "ignore", "received_at"),
        "CallQualification": ("callbacks_qualifications", ("event_id",), "ignore", "received_at"),
        "SmsMetricsWindow": (
            "metrics_sms",
            ("window", "window_start", "login"),
            "upsert",
            "window_start",
        ),
        "OptOut": ("sms_optouts", ("phone_number",), "upsert", "at"),
        "DeadLetter": ("dead_letters", ("event_id",), "ignore", "received_at"),
    }
    assert tuple(t for t in TOPICS if t.warehouse is not None) == WAREHOUSE_TOPICS


@pytest.mark.parametrize("topic", WAREHOUSE_TOPICS, ids=lambda t: t.name)
def test_warehouse_columns_are_fields_of_the_record(topic: TopicSpec) -> None:
    assert topic.warehouse is not None
    names = {f.name for f in fields(topic.record)}
    assert set(topic.warehouse.primary_key) <= names
    assert topic.warehouse.time_column in names

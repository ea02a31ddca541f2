"""The topic table matches the contract: names, keys, co-partitioning, compaction."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline import records
from pipeline.topics import TOPICS, metrics_key, record_key, spec_for, topic_for_record

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_contract_topic_names() -> None:
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
    assert all(t.key == "id_sms_api" for t in TOPICS if t.co_partitioned)


def test_compacted_topics() -> None:
    compacted = {t.name for t in TOPICS if t.config.get("cleanup.policy") == "compact"}
    assert compacted == {"sms.lifecycle", "sms.optouts"}
    assert "compact" in spec_for("metrics.sms").config["cleanup.policy"]


def test_record_keys() -> None:
    req = records.SendRequest("id-9", "u", "+33612345678", "m", T0)
    assert record_key(req) == b"id-9"
    status = records.StatusCallback("e", "+33612345678", "sent", T0, "{}", id_sms_api="id-9")
    assert record_key(status) == b"id-9"
    orphan = records.StatusCallback("e", "+33612345678", "sent", T0, "{}")
    assert record_key(orphan) == b"+33612345678"  # no id: keyed by phone, still published
    sms = records.IncomingSms("e", "+33611111111", "hi", T0, "{}")
    assert record_key(sms) == b"+33611111111"
    dead = records.DeadLetter("e", "r", "d", "GET", b"", T0)
    assert record_key(dead) is None
    window = records.SmsMetricsWindow(T0, T0, "u@x", window="1h")
    assert record_key(window) == metrics_key("1h", T0, "u@x")
    assert metrics_key("1h", T0, "u@x") != metrics_key("1m", T0, "u@x")
    assert topic_for_record(records.OptOut).name == "sms.optouts"

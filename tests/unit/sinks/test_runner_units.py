"""Pure pieces of the sink runner: dead letters for undecodable bytes, topic list."""

from __future__ import annotations

from pipeline.errors import DecodeError
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.sinks.runner import sink_topics, undecodable_dead_letter
from pipeline.topics import TOPICS


def test_undecodable_bytes_become_a_stable_dead_letter() -> None:
    codec = AvroCodec(SchemaStore.load())
    try:
        codec.decode(b"\xc3\x01garbage!")
    except DecodeError as exc:
        error = exc
    a = undecodable_dead_letter(
        "p.callbacks.status", 2, 41, b"\xc3\x01garbage!", 1_700_000_000_000, error
    )
    b = undecodable_dead_letter(
        "p.callbacks.status", 2, 41, b"\xc3\x01garbage!", 1_700_000_000_000, error
    )
    c = undecodable_dead_letter(
        "p.callbacks.status", 2, 42, b"\xc3\x01garbage!", 1_700_000_000_000, error
    )
    assert a == b and a.event_id != c.event_id
    assert a.reason == "undecodable" and a.raw == b"\xc3\x01garbage!"
    assert int(a.received_at.timestamp() * 1000) == 1_700_000_000_000
    assert "p.callbacks.status[2]@41" in a.detail


def test_sink_reads_every_warehouse_topic_but_requests() -> None:
    names = {f"x.{spec.name}" for spec in TOPICS}
    assert set(sink_topics("x.")) == names - {
        "x.sms.send-requests",
        "x.contacts.sync-requests",
        "x.contacts.sync-results",
    }

"""`dead-letters list|replay` against the real broker: what the parser now understands is
re-published with its original time and id; what it still cannot read is reported, not lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from kafka import KafkaProducer

from pipeline.ingress.decode import RawRequest, dead_letter_for
from pipeline.kafka.admin import ensure_topics
from pipeline.records import StatusCallback
from pipeline.serde import AvroCodec, SchemaStore
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def run(args: list[str], bootstrap: str, prefix: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PIPELINE_TOPIC_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def read_all(bootstrap: str, topic: str, codec: AvroCodec) -> list[object]:
    return [codec.decode(m.value) for m in read_topic(bootstrap, topic)]


def test_replay_republishes_what_parses_and_reports_the_rest(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    ensure_topics(kafka_bootstrap, unique_prefix, 2)
    codec = AvroCodec(SchemaStore.load())
    status = {
        "user": "u@x.fr",
        "phone_number": "+33612345678",
        "status": "received",
        "date_status": "2026-05-01T11:59:00.000Z",
        "id_sms_api": "m-42",
    }
    good = RawRequest("GET", f"status={quote(json.dumps(status))}".encode())
    bad = RawRequest("GET", b"status=%7Bnot-json")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for raw in (good, bad):
        letter = dead_letter_for(raw, "test", "dead-lettered by the test", T0)
        producer.send(f"{unique_prefix}callbacks.dead-letter", value=codec.encode(letter))
    producer.flush()
    producer.close()

    listed = run(["dead-letters", "list"], kafka_bootstrap, unique_prefix)
    assert listed.returncode == 0, listed.stderr
    assert "2 dead letter(s) shown" in listed.stdout
    assert "%7Bnot-json" not in listed.stdout  # raw content is never printed

    first = run(["dead-letters", "replay"], kafka_bootstrap, unique_prefix)
    assert first.returncode == 0, first.stderr
    assert (
        "2 dead letter(s) read, 1 re-driven (1 callback record(s) published), 1 still "
        "failing" in first.stdout
    )
    assert "invalid_json" in first.stdout

    statuses = read_all(kafka_bootstrap, f"{unique_prefix}callbacks.status", codec)
    assert len(statuses) == 1
    record = statuses[0]
    assert isinstance(record, StatusCallback)
    assert record.id_sms_api == "m-42"
    assert record.received_at == T0  # the original arrival time, not the replay's

    again = run(["dead-letters", "replay"], kafka_bootstrap, unique_prefix)
    assert "0 dead letter(s) read" in again.stdout  # the group remembers how far it got
    full = run(["dead-letters", "replay", "--from-beginning"], kafka_bootstrap, unique_prefix)
    assert "2 dead letter(s) read, 1 re-driven" in full.stdout
    replayed = read_all(kafka_bootstrap, f"{unique_prefix}callbacks.status", codec)
    assert len(replayed) == 2
    assert {r.event_id for r in replayed} == {record.event_id}  # same id: downstream de-dups

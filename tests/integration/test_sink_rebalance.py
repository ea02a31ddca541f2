"""The sink's consumer group under rebalances: two ways kafka-python 3.0 once stalled the sink.

1. kafka-python runs the rebalance listener on its IO thread; the sink's listener waits there
   for the write in flight. The write used to commit its offsets to Kafka through the consumer,
   which needs that same IO thread: the sink hung for good.
2. A group join that outlives a `poll()` timeout was never applied: the member kept its old
   (empty) assignment — the demo's "sink is still N record(s) behind after 60s".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import records
from pipeline.kafka.groupjoin import resume_dropped_join
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.settings import load_settings
from pipeline.sinks import runner
from pipeline.sinks.factory import open_sink, pii_policy
from pipeline.topics import record_key

pytestmark = pytest.mark.integration

N_RECORDS = 200  # one write: the sink flushes at exactly this many


def _produce(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    codec = AvroCodec(SchemaStore.load())
    base = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for i in range(N_RECORDS):
        record = records.StatusCallback(
            f"e{i:05d}", "+33612345678", "sent", base + timedelta(seconds=i), raw="{}",
            id_sms_api=f"m{i:05d}",
        )  # fmt: skip
        producer.send(topic, codec.encode(record), key=record_key(record))
    producer.flush(timeout=60)
    producer.close()


def _group_lag(bootstrap: str, group: str, topic: str) -> int:
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(
            end - (committed[tp].offset if tp in committed else 0)
            for tp, end in consumer.end_offsets(partitions).items()
        )
    finally:
        consumer.close()
        admin.close()


def test_a_join_that_outlives_its_poll_is_applied(
    kafka_bootstrap: str, kafka_admin: Any, unique_prefix: str, group_id: str,
    make_topic: Any, wait_until: Callable[..., Any],
) -> None:  # fmt: skip
    from kafka import KafkaConsumer

    names = [f"join.{n}" for n in range(4)]
    consumer = KafkaConsumer(**runner.consumer_config(kafka_bootstrap, group_id))
    consumer.subscribe([f"{unique_prefix}{name}" for name in names])  # not created yet

    def poll() -> None:
        # Polls of a few ms expire while JoinGroup/SyncGroup are in flight.
        consumer.poll(timeout_ms=5)
        resume_dropped_join(consumer)

    def group_state() -> str:
        poll()
        from kafka.errors import KafkaError

        try:
            return str(kafka_admin.describe_groups([group_id])[group_id]["group_state"])
        except KafkaError:  # the coordinator may not be elected yet
            return ""

    try:
        wait_until(lambda: group_state() == "Stable", timeout=30, interval=0.0, what="a group")
        assert consumer.assignment() == set()
        for name in names:  # the metadata change makes the member join again
            make_topic(name, partitions=3)

        def assigned() -> bool:
            poll()
            return len(consumer.assignment()) == 12

        wait_until(assigned, timeout=30, interval=0.0, what="all 12 partitions assigned")
    finally:
        consumer.close(autocommit=False)


def test_rebalance_during_a_write_does_not_stall_the_sink(
    kafka_bootstrap: str, make_topic: Any, unique_prefix: str, group_id: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, wait_until: Callable[..., Any],
) -> None:  # fmt: skip
    from kafka import KafkaConsumer

    topic = make_topic("callbacks.status", partitions=2)
    _produce(kafka_bootstrap, topic)
    url = f"duckdb:///{tmp_path}/wh.duckdb"
    settings = load_settings(
        kafka_bootstrap_servers=kafka_bootstrap, pipeline_topic_prefix=unique_prefix,
        warehouse_url=url,
    )  # fmt: skip
    sink = open_sink(url, group_id, pii=pii_policy(settings))

    writing = threading.Event()  # the first write is in flight
    revoking = threading.Event()  # the listener is taking the partitions away
    inner_write = sink.write

    def write(batches: Any) -> int:
        if not writing.is_set():
            writing.set()
            # hold the write until the rebalance waits on it (bounded: never hang the test)
            revoking.wait(timeout=30)
        return inner_write(batches)

    sink.write = write  # type: ignore[method-assign]
    inner_revoked = runner._Loop.on_partitions_revoked

    def on_revoked(self: Any, revoked: Any) -> None:
        if writing.is_set():
            revoking.set()
        inner_revoked(self, revoked)

    monkeypatch.setattr(runner._Loop, "on_partitions_revoked", on_revoked)

    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["stats"] = runner.run_sink(
                settings, stop_event=stop, group=group_id, sink=sink,
                flush_every=N_RECORDS, poll_records=500, flush_interval_ms=600_000,
            )  # fmt: skip
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_until(writing.is_set, timeout=60, what="the sink's first write")

    # a second member joins the group: the sink must give up partitions mid-write
    other = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group_id, enable_auto_commit=False,
        session_timeout_ms=10_000, heartbeat_interval_ms=1_000,
    )  # fmt: skip
    other.subscribe([topic])
    try:
        wait_until(
            lambda: other.poll(timeout_ms=200) is not None and other.assignment(),
            timeout=60,
            what="the second member's assignment",
        )
        assert revoking.is_set()
    finally:
        other.close(autocommit=False)

    # the sink takes every partition back and commits everything it stored
    wait_until(
        lambda: "error" in outcome or _group_lag(kafka_bootstrap, group_id, topic) == 0,
        timeout=90,
        what="the sink's committed offsets to reach the end of the topic",
    )
    stop.set()
    thread.join(timeout=60)
    assert not thread.is_alive(), "the sink did not stop"
    assert "error" not in outcome, outcome.get("error")

    import duckdb

    conn = duckdb.connect(f"{tmp_path}/wh.duckdb", read_only=True)
    try:
        rows = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM callbacks_status"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [(N_RECORDS, N_RECORDS)]

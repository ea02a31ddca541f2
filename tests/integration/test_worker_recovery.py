"""Kill -9 the correlate worker, restart it on an EMPTY data dir: the table comes back from its
changelog, and callbacks after the restart merge onto the recovered state."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from pipeline.core.lifecycle import batch_lifecycles
from pipeline.kafka.admin import ensure_topics
from pipeline.records import SendRequest, SendResult
from tests.agents.streamdata import TopicReader, make_events, produce, recent_base
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PARTITIONS = 3


def _committed_all(bootstrap: str, group: str, topics: list[str]) -> bool:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets(group).get(group, {})
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = consumer.end_offsets(tps)
    finally:
        consumer.close()
        admin.close()
    return all(
        end == 0 or (tp in committed and committed[tp].offset >= end) for tp, end in ends.items()
    )


async def test_table_survives_sigkill(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, PARTITIONS)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_PARTITIONS": str(PARTITIONS),
    }
    events = [
        e
        for e in make_events(200, seed=3, base=recent_base())
        if not hasattr(e, "from_number") and getattr(e, "id_sms_api", None)
    ]
    sends = [e for e in events if isinstance(e, SendRequest | SendResult)]
    callbacks = [e for e in events if not isinstance(e, SendRequest | SendResult)]
    assert sends and callbacks

    first = WorkerProcess(env, "correlate", tmp_path / "w1").start()
    killed = False
    try:
        await produce(kafka_bootstrap, prefix, sends)
        async with TopicReader(kafka_bootstrap, f"{prefix}sms.lifecycle") as reader:
            expected = {k.encode(): v for k, v in batch_lifecycles(sends).items()}
            await reader.until(lambda: reader.latest == expected, 60, "lifecycles of the sends")
        inputs = [f"{prefix}sms.send-requests", f"{prefix}sms.send-results"]
        # Nothing left to replay: after the restart only the changelog can bring the state back.
        wait_for(
            lambda: _committed_all(kafka_bootstrap, f"{prefix}workers", inputs),
            30,
            "input offsets committed",
            interval=0.5,
        )
        first.kill()
        killed = True
        assert first.proc is not None and first.proc.returncode != 0
    finally:
        if not killed:
            first.stop()

    second = WorkerProcess(env, "correlate", tmp_path / "w2").start()  # empty data dir
    try:
        await produce(kafka_bootstrap, prefix, callbacks)
        expected_all = {k.encode(): v for k, v in batch_lifecycles(events).items()}
        async with TopicReader(kafka_bootstrap, f"{prefix}sms.lifecycle") as reader:
            await reader.until(
                lambda: reader.latest == expected_all, 90, "lifecycles merged after recovery"
            )
            recovered: Any = reader.latest
        delivered = [r for r in recovered.values() if r.state == "DELIVERED"]
        assert delivered and all(r.requested_at is not None for r in delivered)
    finally:
        assert second.stop() == 0, second.log_tail()

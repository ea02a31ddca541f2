"""The worker's producer on the real broker: it has a producer id, so a resend is dropped.

A produce request the broker wrote but whose answer was lost (its leader killed mid-request) is
sent again; only an idempotent producer's resend carries the id and sequence numbers the
partition's new leader needs to drop it. Without them the secured pipeline test's worker wrote
SendResults twice after a leader was SIGKILLed (see `pipeline.kafka.transport`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.agents.app import create_app
from pipeline.kafka.produce import PartitionBatches, app_producer
from pipeline.settings import load_settings
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration


async def test_the_workers_producer_has_a_producer_id_and_writes_each_record_once(
    kafka_bootstrap: str, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic("worker-producer", partitions=2)
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap)
    app, _ = create_app(settings, agents=[], data_dir=tmp_path)
    await app.producer.start()
    try:
        producer = app_producer(app)
        txn = producer._txn_manager
        assert txn is not None and txn.has_pid(), "no producer id: resends would be written"
        assert txn.producer_id >= 0
        batches = PartitionBatches.for_app(app)
        sent = [(i % 2, f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
        for record in sent:
            batches.add(topic, *record)
        await batches.send_and_wait()
    finally:
        await app.producer.stop()
    records = sorted(read_topic(kafka_bootstrap, topic), key=lambda r: (r.partition, r.offset))
    assert [(r.partition, r.key, r.value) for r in records] == sorted(sent, key=lambda r: r[0])

"""`bench correlate`'s recovery run: seconds until a killed correlate worker processes events again.

The worker holding the live lifecycles is SIGKILLed; one new send request per partition (the
probes) is published; a worker is started and the clock runs from its spawn until the probes'
lifecycle records are on `sms.lifecycle`. That covers everything a restart costs: start-up,
the group join, the table's recovery from its changelog, and the first batch. Run twice: on the
same data dir (RocksDB holds the table: only the changelog's tail is read) and on an empty one
(the partitions moved to a worker without local state: a full restore).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pipeline import records
from pipeline.errors import PipelineError
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.produce import partition_for
from pipeline.kafka.readers import topic_partitions
from pipeline.serde import make_codec
from pipeline.topics import record_key

__all__ = ["probe_ids", "recovery_label", "seconds_to_resume"]


def probe_ids(tag: str, partitions: int) -> list[str]:
    """One `id_sms_api` per partition (the default keyed partitioner's choice), named by `tag`."""
    ids: dict[int, str] = {}
    n = 0
    while len(ids) < partitions:
        mid = f"{tag}-{n}"
        ids.setdefault(partition_for(mid.encode(), list(range(partitions))), mid)
        n += 1
    return [ids[p] for p in range(partitions)]


def recovery_label(live: int) -> str:
    """The RATIO name's suffix for `live` lifecycles: `1m` for a million, else the number."""
    return "1m" if live == 1_000_000 else str(live)


def seconds_to_resume(
    spawn: Callable[[], subprocess.Popen[bytes]],
    client: KafkaClientConfig,
    prefix: str,
    partitions: int,
    tag: str,
    timeout: float,
) -> tuple[float, subprocess.Popen[bytes]]:
    """Publish a probe per partition, spawn the worker, and time it until all probes are done.

    Returns the seconds from the spawn to the last probe's lifecycle record, and the process.
    """
    return asyncio.run(_resume(spawn, client, prefix, partitions, tag, limit_s=timeout))


async def _resume(
    spawn: Callable[[], subprocess.Popen[bytes]],
    client: KafkaClientConfig,
    prefix: str,
    partitions: int,
    tag: str,
    *,
    limit_s: float,
) -> tuple[float, subprocess.Popen[bytes]]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    codec = make_codec(None)
    topic = f"{prefix}sms.lifecycle"
    consumer = AIOKafkaConsumer(**client.aiokafka(), enable_auto_commit=False)
    producer = AIOKafkaProducer(**client.aiokafka(), acks="all")
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)])
        await consumer.seek_to_end()
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolve the end now, before any probe is processed
        waiting = set(probe_ids(tag, partitions))
        now = datetime.now(UTC)
        for mid in sorted(waiting):
            probe = records.SendRequest(mid, "bench", "+33612345678", "probe", now)
            await producer.send_and_wait(
                f"{prefix}sms.send-requests", codec.encode(probe), key=record_key(probe)
            )
        start = time.perf_counter()
        proc = spawn()
        deadline = start + limit_s
        while waiting:
            if proc.poll() is not None:
                raise PipelineError(f"the restarted worker exited {proc.returncode}")
            if time.perf_counter() > deadline:
                raise PipelineError(f"{len(waiting)} probe(s) not processed after {limit_s:.0f}s")
            batches = await consumer.getmany(timeout_ms=100)
            for messages in batches.values():
                for message in messages:
                    if message.key is not None:
                        waiting.discard(message.key.decode())
        return time.perf_counter() - start, proc
    finally:
        await consumer.stop()
        await producer.stop()

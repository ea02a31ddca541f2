"""`ardary-pipeline bench sink`: lifecycle rows/s into DuckDB and PostgreSQL vs a bare consumer.

One run: N SmsLifecycle records are pre-loaded into a fresh topic; then, each from the same
topic with the same poll sizes, (1) the bare kafka-python consume-and-decode loop, (2) the sink
into a fresh DuckDB file, (3) the sink into PostgreSQL (given, or a temporary server when the
binaries are installed). Rates count from the first record polled to the end of the last
flush, so group joins and start-up are left out of every figure alike. Every client takes the
cluster's TLS/SASL settings, and the topic gets the replication the pipeline's topics get
(`min(3, brokers)` copies, `min.insync.replicas=2` from three), so a figure on a three-broker
secured cluster includes what replication and encryption cost.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import records
from pipeline.devtools.bench.broker import BenchCluster
from pipeline.kafka.admin import replication_for, topic_configs
from pipeline.kafka.config import KafkaClientConfig
from pipeline.procutil import batch_gc
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.sinks.runner import POLL_RECORDS, consumer_config, run_sink
from pipeline.topics import record_key, spec_for

__all__ = ["bench_postgres", "run_sink_bench", "sink_duckdb_rows_per_s"]

TOPIC = "sms.lifecycle"
PARTITIONS = 6


def _records(n: int) -> Iterator[records.SmsLifecycle]:
    t0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    for i in range(n):
        at = t0 + timedelta(milliseconds=37 * i)
        yield records.SmsLifecycle(
            id_sms_api=f"bench-{i:08d}",
            state="DELIVERED" if i % 4 else "SENT",
            updated_at=at + timedelta(seconds=9),
            login=f"login{i % 5}",
            phone_number=f"+336{i % 100_000_000:08d}",
            requested_at=at,
            submitted_at=at + timedelta(seconds=1),
            sent_at=at + timedelta(seconds=2),
            delivered_at=at + timedelta(seconds=8) if i % 4 else None,
            click_count=i % 3,
            sms_per_message=1 + i % 2,
            error_codes=(),
            metadata={"campaign": f"c{i % 7}", "team": "growth"},
        )


def _preload(cluster: BenchCluster, topic: str, n: int) -> None:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    spec = spec_for(TOPIC)
    factor = replication_for(cluster.brokers)
    options = cluster.client.kafka_python()
    admin = KafkaAdminClient(**options, client_id="bench-sink")
    try:
        admin.create_topics(
            [NewTopic(topic, PARTITIONS, factor, topic_configs=topic_configs(spec, factor))]
        )
    finally:
        admin.close()
    codec = AvroCodec(SchemaStore.load())
    producer = KafkaProducer(**options, acks="all", linger_ms=20, batch_size=512 * 1024)
    for record in _records(n):
        producer.send(topic, codec.encode(record), key=record_key(record))
    producer.flush(timeout=300)
    producer.close()


def _drain(consumer: Any, codec: AvroCodec, n: int, deadline: float) -> tuple[int, float | None]:
    """Poll and decode until n records or the deadline: (records seen, time of first poll)."""
    seen, first = 0, None
    while seen < n and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=200, max_records=POLL_RECORDS)
        if polled and first is None:
            first = time.monotonic()
        for messages in polled.values():
            for message in messages:
                codec.decode(message.value)
                seen += 1
    return seen, first


def _consume_baseline(client: KafkaClientConfig, topic: str, n: int, timeout: float = 300) -> float:
    """Seconds the bare consume-and-decode loop takes for n records (first poll to last)."""
    from kafka import KafkaConsumer, TopicPartition

    codec = AvroCodec(SchemaStore.load())
    consumer = KafkaConsumer(**consumer_config(client, None))
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        deadline = time.monotonic() + timeout
        with batch_gc():  # the sink runs with the same collector settings
            seen, first = _drain(consumer, codec, n, deadline)
        if seen < n or first is None:
            raise RuntimeError(f"baseline read {seen} of {n} records")
        return time.monotonic() - first
    finally:
        consumer.close()


def _sink_seconds(cluster: BenchCluster, prefix: str, url: str, n: int) -> float:
    settings = cluster.settings(
        pipeline_topic_prefix=prefix,
        warehouse_url=url,
        warehouse_pii="raw",
        schema_registry_url=None,
    )
    stats = run_sink(
        settings,
        stop_event=threading.Event(),
        max_idle_s=5.0,
        url=url,
        group=f"bench-{uuid.uuid4().hex[:8]}",
    )
    if stats.rows != n:
        raise RuntimeError(f"sink wrote {stats.rows} rows of {n}")
    return stats.busy_seconds


def _duckdb_rows_per_s(cluster: BenchCluster, prefix: str, n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        url = f"duckdb:///{Path(tmp) / 'bench.duckdb'}"
        return n / _sink_seconds(cluster, prefix, url, n)


def sink_duckdb_rows_per_s(cluster: BenchCluster, n: int) -> float:
    """Lifecycle rows/s of the sink alone into a fresh DuckDB file, `n` records preloaded on a
    fresh topic: the DuckDB run of `bench sink`, for `bench e2e`."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    _preload(cluster, prefix + TOPIC, n)
    return _duckdb_rows_per_s(cluster, prefix, n)


def run_sink_bench(
    cluster: BenchCluster,
    n: int = 200_000,
    pg_dsn: str | None = None,
    *,
    echo: Callable[[str], Any] = print,
) -> dict[str, float]:
    """Run the benchmark, print its figures and RATIO lines; return the figures."""
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    topic = prefix + TOPIC
    echo(f"cluster: {cluster.describe()}")
    started = time.monotonic()
    _preload(cluster, topic, n)
    echo(f"preloaded {n} lifecycle records into {topic} in {time.monotonic() - started:.1f}s")
    out: dict[str, float] = {}
    out["consume_rows_per_s"] = n / _consume_baseline(cluster.client, topic, n)
    echo(f"bare consume+decode : {out['consume_rows_per_s']:>10,.0f} records/s")
    out["duckdb_rows_per_s"] = _duckdb_rows_per_s(cluster, prefix, n)
    echo(f"sink -> DuckDB      : {out['duckdb_rows_per_s']:>10,.0f} rows/s")
    if pg_dsn:
        out["postgres_rows_per_s"] = n / _sink_seconds(cluster, prefix, pg_dsn, n)
        echo(f"sink -> PostgreSQL  : {out['postgres_rows_per_s']:>10,.0f} rows/s")
    out["sink_duckdb_vs_consume"] = out["duckdb_rows_per_s"] / out["consume_rows_per_s"]
    echo(f"RATIO sink_duckdb_vs_consume={out['sink_duckdb_vs_consume']:.2f}")
    if pg_dsn:
        out["sink_postgres_vs_consume"] = out["postgres_rows_per_s"] / out["consume_rows_per_s"]
        echo(f"RATIO sink_postgres_vs_consume={out['sink_postgres_vs_consume']:.2f}")
    return out


@contextlib.contextmanager
def bench_postgres(dsn: str | None, *, warn: Callable[[str], Any] = print) -> Iterator[str | None]:
    """`dsn` if given, else a temporary PostgreSQL server, else None (binaries missing)."""
    if dsn:
        yield dsn
        return
    from pipeline.devtools.pgtemp import TempPostgres, find_pg_bin

    if find_pg_bin() is None:
        warn("PostgreSQL binaries not found: skipping the PostgreSQL run")
        yield None
        return
    with TempPostgres() as pg:
        yield pg.dsn

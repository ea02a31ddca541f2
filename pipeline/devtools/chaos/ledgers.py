"""Gathering the chaos run's evidence once the stack is quiet: the load generator's log, the
simulator's ledgers, the topics read back whole, and the warehouse (read-only, the sink stopped).
"""

# ruff: noqa: S608  -- table names come from pipeline.topics, values are bound

from __future__ import annotations

import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson

from pipeline.core.lifecycle import batch_lifecycles
from pipeline.devtools.chaos.reconcile import Evidence, SentCallback
from pipeline.errors import PipelineError
from pipeline.kafka.config import KafkaClientConfig
from pipeline.records import ClickCallback, SendRequest, SendResult, SmsLifecycle, StatusCallback
from pipeline.serde import Codec
from pipeline.topics import WAREHOUSE_TOPICS, spec_for

__all__ = ["CALLBACK_TABLES", "gather_evidence", "read_topic"]

_TOPIC_OF_PARAM = {
    "status": "callbacks.status",
    "click": "callbacks.clicks",
    "clics": "callbacks.clicks",
    "message": "callbacks.incoming-sms",
    "call": "callbacks.calls",
    "calls": "callbacks.calls",
    "qualification": "callbacks.qualifications",
}


def _table(topic: str) -> str:
    warehouse = spec_for(topic).warehouse
    assert warehouse is not None
    return warehouse.table


TABLE_OF_PARAM = {param: _table(topic) for param, topic in _TOPIC_OF_PARAM.items()}
CALLBACK_TABLES = tuple(sorted(set(TABLE_OF_PARAM.values())))


def read_topic(client: KafkaClientConfig, topic: str, timeout: float = 120.0) -> list[bytes]:
    """Every record value of `topic`, up to the end offsets it has now (tombstones skipped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **client.kafka_python(),
        group_id=None,
        enable_auto_commit=False,
        client_id="chaos-reader",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise PipelineError(f"could not read {topic} to its end within {timeout:.0f}s")
            for batch in consumer.poll(timeout_ms=500, max_records=50_000).values():
                values.extend(m.value for m in batch if m.value is not None)
        return values
    finally:
        consumer.close()


def _generator_log(path: Path) -> tuple[list[SentCallback], set[str], set[str]]:
    callbacks: list[SentCallback] = []
    acked: set[str] = set()
    failed: set[str] = set()
    for line in path.read_bytes().splitlines():
        entry = orjson.loads(line)
        if entry["type"] == "request":
            (acked if entry["outcome"] == "ok" else failed).add(entry["id"])
        else:
            callbacks.append(
                SentCallback(
                    "generator",
                    TABLE_OF_PARAM[entry["param"]],
                    entry["raw"],
                    entry["outcome"],
                    entry["status"],
                    entry["spooled"],
                )
            )
    return callbacks, acked, failed


def _simulator(url: str, keep_in: Path) -> tuple[list[SentCallback], dict[str, int]]:
    """The simulator's ledgers, also written to `keep_in` (they live in its memory only)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        ledger_bytes = http.get("/_sim/ledger").content
        fired_bytes = http.get("/_sim/callbacks").content
    (keep_in / "simulator-ledger.json").write_bytes(ledger_bytes)
    (keep_in / "simulator-callbacks.json").write_bytes(fired_bytes)
    ledger, fired = orjson.loads(ledger_bytes), orjson.loads(fired_bytes)
    submissions = {m["id_sms_api"]: int(m["submissions"]) for m in ledger["messages"]}
    callbacks = [
        SentCallback("simulator", TABLE_OF_PARAM[c["param"]], c["raw"], c["outcome"], c["status"])
        for c in fired["callbacks"]
    ]
    return callbacks, submissions


def _decoded(client: KafkaClientConfig, prefix: str, name: str, codec: Codec) -> list[Any]:
    return [codec.decode(v) for v in read_topic(client, spec_for(name).full_name(prefix))]


def _warehouse(
    path: Path, sent: Iterable[tuple[str, str]]
) -> tuple[dict[str, Counter[str]], dict[str, int], int, dict[str, tuple[str, int, int]]]:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{path}' AS wh (READ_ONLY)")
        raws: dict[str, Counter[str]] = {}
        for table in CALLBACK_TABLES:
            rows = con.execute(f"SELECT raw, count(*) FROM wh.{table} GROUP BY raw").fetchall()
            raws[table] = Counter({str(raw): int(n) for raw, n in rows})
        key_dupes: dict[str, int] = {}
        for spec in WAREHOUSE_TOPICS:
            assert spec.warehouse is not None
            keys = ", ".join(f'"{k}"' for k in spec.warehouse.primary_key)  # `window` is a keyword
            (extra,) = con.execute(
                f"SELECT count(*) - count(DISTINCT ({keys})) FROM wh.{spec.warehouse.table}"
            ).fetchone() or (0,)
            key_dupes[spec.warehouse.table] = int(extra)
        con.execute("CREATE TABLE sent (tbl VARCHAR, raw VARCHAR)")
        con.executemany("INSERT INTO sent VALUES (?, ?)", sorted(set(sent)))
        found = 0
        for table in CALLBACK_TABLES:
            (n,) = con.execute(
                f"SELECT count(*) FROM sent s WHERE s.tbl = ? AND EXISTS "
                f"(SELECT 1 FROM wh.{table} w WHERE w.raw = s.raw)",
                [table],
            ).fetchone() or (0,)
            found += int(n)
        lifecycles = {
            str(i): (str(state), int(clicks), int(ms))
            for i, state, clicks, ms in con.execute(
                "SELECT id_sms_api, state, click_count, epoch_ms(updated_at) FROM wh.sms_lifecycle"
            ).fetchall()
        }
    finally:
        con.close()
    return raws, key_dupes, found, lifecycles


def gather_evidence(
    *,
    client: KafkaClientConfig,
    prefix: str,
    codec: Codec,
    generator_log: Path,
    simulator_url: str,
    warehouse: Path,
) -> Evidence:
    """Read every ledger (the sink must be stopped: DuckDB allows one writer or readers)."""
    gen_callbacks, acked, failed = _generator_log(generator_log)
    sim_callbacks, submissions = _simulator(simulator_url, generator_log.parent)
    callbacks = (*gen_callbacks, *sim_callbacks)
    requests = _decoded(client, prefix, "sms.send-requests", codec)
    results = _decoded(client, prefix, "sms.send-results", codec)
    statuses = _decoded(client, prefix, "callbacks.status", codec)
    clicks = _decoded(client, prefix, "callbacks.clicks", codec)
    latest: dict[str, SmsLifecycle] = {}
    for record in _decoded(client, prefix, "sms.lifecycle", codec):
        latest[record.id_sms_api] = record  # per partition in offset order: the last one wins
    by_id: dict[str, list[SendResult]] = defaultdict(list)
    for result in results:
        by_id[result.id_sms_api].append(result)
    events = [
        e
        for e in (*requests, *results, *statuses, *clicks)
        if isinstance(e, SendRequest | SendResult | StatusCallback | ClickCallback)
    ]
    sent = {(c.table, c.raw) for c in callbacks if c.accepted}
    raws, key_dupes, found, wh_lifecycles = _warehouse(warehouse, sent)
    return Evidence(
        callbacks=callbacks,
        requests_acked=frozenset(acked),
        requests_failed=frozenset(failed),
        requests_in_topic=Counter(r.id_sms_api for r in requests),
        results={i: tuple(rs) for i, rs in by_id.items()},
        submissions=submissions,
        warehouse_raw=raws,
        warehouse_key_dupes=key_dupes,
        in_warehouse_by_join=found,
        lifecycle_latest=latest,
        lifecycle_batch=batch_lifecycles(events),
        warehouse_lifecycles=wh_lifecycles,
    )

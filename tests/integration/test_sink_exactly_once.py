"""Kill -9 the sink in the middle of its work, restart it: every record lands exactly once."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import records
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.topics import record_key
from tests import postgres_fixture

# the PostgreSQL fixtures, until the shared conftest provides them
pg_database = postgres_fixture.pg_database
postgres_dsn = postgres_fixture.postgres_dsn

pytestmark = pytest.mark.integration

N_STATUS = 12_000  # 10,000 distinct event ids, 2,000 redeliveries
N_LIFECYCLE = 8_000  # updates of 3,000 messages; the last one per message must win
N_GARBAGE = 3

# The sink as a separate process, slowed inside its flush transaction (between the rows and
# the offsets) so that SIGKILL is likely to land with a transaction open.
SCRIPT = textwrap.dedent(
    """
    import logging, sys, threading, time
    from pipeline.settings import load_settings
    from pipeline.sinks import runner
    from pipeline.sinks.factory import open_sink, pii_policy

    url, group, idle = sys.argv[1], sys.argv[2], sys.argv[3]
    settings = load_settings(warehouse_url=url)
    sink = open_sink(url, group, pii=pii_policy(settings))
    inner = sink._write_offsets

    def slow_offsets(conn, batches):
        time.sleep(0.05)
        inner(conn, batches)

    sink._write_offsets = slow_offsets
    inner_write = sink.write

    def write(batches):
        n = inner_write(batches)
        print("FLUSHED", n, flush=True)
        return n

    sink.write = write
    stats = runner.run_sink(
        settings, stop_event=threading.Event(), max_idle_s=float(idle) if idle != "-" else None,
        group=group, sink=sink, flush_every=400, poll_records=400,
    )
    print("DONE", stats.records, stats.rows, flush=True)
    """
)


def _dataset() -> tuple[list[records.Record], dict[str, str], set[str]]:
    """Records to produce, the expected final state per message, the distinct event ids."""
    base = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    out: list[records.Record] = []
    final_state: dict[str, str] = {}
    states = ("REQUESTED", "SUBMITTED", "SENT", "DELIVERED")
    for i in range(N_LIFECYCLE):
        msg = f"m{i % 3000:05d}"
        state = states[(i // 3000) % len(states)]
        out.append(
            records.SmsLifecycle(
                msg, state, base + timedelta(seconds=i), login="acme", phone_number="+33612345678"
            )
        )
        final_state[msg] = state
    for i in range(N_STATUS):
        eid = f"e{i % 10_000:05d}"
        out.append(
            records.StatusCallback(
                eid, "+33612345678", "sent", base + timedelta(seconds=i), raw="{}",
                id_sms_api=f"m{i % 3000:05d}",
            )
        )  # fmt: skip
    return out, final_state, {r.event_id for r in out if isinstance(r, records.StatusCallback)}


def _produce(bootstrap: str, topics: dict[str, str], batch: list[records.Record]) -> None:
    from kafka import KafkaProducer

    codec = AvroCodec(SchemaStore.load())
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for record in batch:
        topic = topics["lifecycle" if isinstance(record, records.SmsLifecycle) else "status"]
        producer.send(topic, codec.encode(record), key=record_key(record))
    for i in range(N_GARBAGE):
        producer.send(topics["status"], b"not avro %d" % i, key=b"x")
    producer.flush(timeout=60)
    producer.close()


class _Proc:
    """The sink subprocess with its stdout lines in a queue (read without blocking the test)."""

    def __init__(self, script: Path, url: str, group: str, idle: str, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, group, idle],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self.pump.join(timeout=10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, predicate: Any, timeout: float) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return line
        pytest.fail(f"no expected line in {timeout}s; got: {self.seen[-20:]}")


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path}/wh.duckdb"
    else:
        yield request.getfixturevalue("pg_database")


def _counts(url: str) -> dict[str, Any]:
    queries = {
        "status": "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM callbacks_status",
        "lifecycle": "SELECT COUNT(*), COUNT(DISTINCT id_sms_api) FROM sms_lifecycle",
        "dead": "SELECT COUNT(*), COUNT(*) FILTER (WHERE reason = 'undecodable') FROM dead_letters",
        "states": "SELECT id_sms_api, state FROM sms_lifecycle",
    }
    if url.startswith("duckdb"):
        import duckdb

        conn = duckdb.connect(url.removeprefix("duckdb:///"), read_only=True)
        try:
            return {k: conn.execute(q).fetchall() for k, q in queries.items()}
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as conn:
        return {k: conn.execute(q).fetchall() for k, q in queries.items()}


def test_kill_minus_nine_then_restart_writes_each_record_once(
    kafka_bootstrap: str, make_topic: Any, unique_prefix: str, group_id: str, warehouse: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    topics = {
        "lifecycle": make_topic("sms.lifecycle", partitions=3),
        "status": make_topic("callbacks.status", partitions=3),
    }
    dataset, final_state, event_ids = _dataset()
    _produce(kafka_bootstrap, topics, dataset)
    script = tmp_path / "sink_proc.py"
    script.write_text(SCRIPT)
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        PIPELINE_TOPIC_PREFIX=unique_prefix,
        WAREHOUSE_PII="raw",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )

    first = _Proc(script, warehouse, group_id, "-", env)
    try:
        # a few transactions have committed, many records remain: kill it, no goodbye
        flushed = 0

        def enough(line: str) -> bool:
            nonlocal flushed
            if line.startswith("FLUSHED"):
                flushed += 1
            return flushed >= 4

        first.wait_for(enough, timeout=120)
        assert first.proc.poll() is None, "the sink finished before it could be killed"
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
    finally:
        first.close()
    assert first.proc.returncode == -signal.SIGKILL

    partial = _counts(warehouse)
    total_expected = len(event_ids) + len(final_state)
    written_before = partial["status"][0][0] + partial["lifecycle"][0][0]
    assert 0 < written_before < total_expected

    second = _Proc(script, warehouse, group_id, "3", env)
    try:
        done = second.wait_for(lambda line: line.startswith("DONE"), timeout=180)
        assert second.proc.wait(timeout=30) == 0
    finally:
        second.close()
    reread = int(done.split()[1])
    # it resumed from the stored offsets instead of starting over
    assert reread < len(dataset) + N_GARBAGE

    after = _counts(warehouse)
    assert after["status"] == [(len(event_ids), len(event_ids))]
    assert after["lifecycle"] == [(len(final_state), len(final_state))]
    assert after["dead"] == [(N_GARBAGE, N_GARBAGE)]
    assert dict(after["states"]) == final_state

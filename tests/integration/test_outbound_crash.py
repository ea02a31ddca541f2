"""A worker SIGKILLed in the middle of Ardary calls, then restarted: no SMS twice, one result."""

from __future__ import annotations

import time
import warnings
from collections import Counter
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from pipeline.topics import ensure_topics
from tests.integration.test_outbound_support import (
    SimulatorProcess,
    TopicReader,
    publish,
    request,
    worker_env,
)
from tests.worker_process import WorkerProcess, wait_for

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

pytestmark = pytest.mark.integration

N = 600


def test_sigkill_mid_batch_then_restart_sends_each_sms_at_most_once(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_bootstrap, unique_prefix, 4)
    # latency keeps batches in flight long enough for the kill to land inside Ardary calls
    sim = SimulatorProcess(tmp_path, "--latency-ms", "500")
    env = worker_env(
        kafka_bootstrap,
        unique_prefix,
        sim,
        OUTBOUND_RATE_PER_SECOND="250",
        OUTBOUND_MAX_BATCH="10",
    )
    results = TopicReader(kafka_bootstrap, f"{unique_prefix}sms.send-results")
    worker = WorkerProcess(env, "outbound", tmp_path / "w")
    try:
        worker.start()
        ids = [f"crash-{uuid4().hex[:8]}-{i}" for i in range(N)]
        publish(kafka_bootstrap, f"{unique_prefix}sms.send-requests", (request(i) for i in ids))
        wait_for(lambda: sim.stats()["unique_ids"] >= N // 6, 60, "some messages accepted")
        worker.kill()
        committed_at_kill = committed_offsets(kafka_bootstrap, f"{unique_prefix}workers")
        accepted_at_kill = sim.stats()["unique_ids"]
        assert accepted_at_kill < N, "the kill came too late to land mid-run"

        worker.start()  # same data dir: the RocksDB table and the changelog survive
        try:
            by_id = results.wait_ids(ids, timeout=120)
        except AssertionError as exc:
            why = diagnosis(ids, results, sim, worker)
            offsets = request_offsets(kafka_bootstrap, f"{unique_prefix}sms.send-requests")
            missing = sorted(offsets[i] for i in ids if i not in results.by_id())
            now = committed_offsets(kafka_bootstrap, f"{unique_prefix}workers")
            raise AssertionError(
                f"{exc}\n{why}\ncommitted at kill {committed_at_kill}, now {now}\n"
                f"missing (partition, offsets): {ranges(missing)}"
            ) from None
        ledger = sim.ledger()
    finally:
        worker.stop()
        sim.stop()
        results.close()

    counts = Counter(len(by_id[i]) for i in ids)
    doubles = {i: by_id[i] for i in ids if len(by_id[i]) > 1}
    assert counts == {1: N}, f"results per id: {counts}: {list(doubles.items())[:3]}"
    assert sim_duplicates(ledger) == []
    outcomes = Counter(by_id[i][0].outcome for i in ids)
    unknown = [i for i in ids if by_id[i][0].error_codes == ("UNKNOWN_AFTER_CRASH",)]
    assert unknown, "no send was caught in flight by the kill"
    assert outcomes["SUBMITTED"] + len(unknown) == N
    for i in ids:
        if by_id[i][0].outcome == "SUBMITTED":
            assert i in ledger  # reported sent ⇒ Ardary has it, once


def diagnosis(ids: list[str], results: TopicReader, sim: SimulatorProcess, w: WorkerProcess) -> str:
    """What a stalled run looked like: results seen, what Ardary took, the worker's gauges."""
    seen = results.by_id()
    missing = [i for i in ids if i not in seen]
    ledger = sim.ledger()
    try:
        gauges = [
            line
            for line in httpx.get(f"http://127.0.0.1:{w.web_port}/metrics", timeout=5).text.split(
                "\n"
            )
            if line.startswith(("ardary_outbound", "pipeline_agent")) and not line.startswith("#")
        ]
    except httpx.HTTPError as exc:
        gauges = [f"metrics unavailable: {exc!r}"]
    return "\n".join(
        [
            f"results for {len(ids) - len(missing)} of {len(ids)} ids; missing e.g. {missing[:5]}",
            f"of the missing, {sum(1 for i in missing if i in ledger)} are in Ardary's ledger",
            f"simulator: {sim.stats()}",
            *gauges,
            f"task dump written to {w.log_path}: {len(w.dump_tasks())} bytes",
        ]
    )


def ranges(points: list[tuple[int, int]]) -> dict[int, list[str]]:
    """{partition: ["3-9", "12"]} for sorted (partition, offset) pairs."""
    out: dict[int, list[str]] = {}
    for partition, offset in points:
        runs = out.setdefault(partition, [])
        if runs and int(runs[-1].split("-")[-1]) == offset - 1:
            runs[-1] = f"{runs[-1].split('-')[0]}-{offset}"
        else:
            runs.append(str(offset))
    return out


def committed_offsets(bootstrap: str, group: str) -> dict[int, int]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return {
            tp.partition: meta.offset
            for tp, meta in admin.list_group_offsets({group: None})[group].items()
            if tp.topic.endswith("sms.send-requests")
        }
    finally:
        admin.close()


def request_offsets(bootstrap: str, topic: str) -> dict[str, tuple[int, int]]:
    """Where each request sits: id_sms_api → (partition, offset)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: dict[str, tuple[int, int]] = {}
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, messages in consumer.poll(timeout_ms=200).items():
                for m in messages:
                    found[m.key.decode()] = (tp.partition, m.offset)
        return found
    finally:
        consumer.close()


def sim_duplicates(ledger: dict[str, dict[str, object]]) -> list[str]:
    return [i for i, entry in ledger.items() if entry["submissions"] != 1]

"""A worker SIGKILLed in the middle of Ardary calls, then restarted: no SMS twice, one result."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from pipeline.kafka.admin import ensure_topics
from tests.integration.test_outbound_support import (
    SimulatorProcess,
    publish,
    request,
    worker_env,
)
from tests.kafka_read import TopicReader, read_topic
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
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
            why = diagnosis(kafka_bootstrap, unique_prefix, ids, results, sim, worker)
            raise AssertionError(f"{exc}\ncommitted at kill {committed_at_kill}\n{why}") from None
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


def diagnosis(
    bootstrap: str,
    prefix: str,
    ids: list[str],
    results: TopicReader,
    sim: SimulatorProcess,
    w: WorkerProcess,
) -> str:
    """What a stalled run looked like: which requests lack a result and where they sit, what
    Ardary took, the group's committed offsets, the worker's gauges and its task dump."""
    seen = results.by_id()
    missing = [i for i in ids if i not in seen]
    ledger = sim.ledger()
    where = {
        r.key.decode(): (r.partition, r.offset)
        for r in read_topic(bootstrap, f"{prefix}sms.send-requests")
    }
    try:
        metrics = httpx.get(f"http://127.0.0.1:{w.web_port}/metrics", timeout=5).text
        gauges = [
            line
            for line in metrics.split("\n")
            if line.startswith(("ardary_outbound", "ardary_agent")) and not line.startswith("#")
        ]
    except httpx.HTTPError as exc:
        gauges = [f"metrics unavailable: {exc!r}"]
    return "\n".join(
        [
            f"results for {len(ids) - len(missing)} of {len(ids)} ids; missing e.g. {missing[:5]}",
            f"of the missing, {sum(1 for i in missing if i in ledger)} are in Ardary's ledger",
            f"missing (partition, offsets): {ranges(sorted(where[i] for i in missing))}",
            f"committed now {committed_offsets(bootstrap, f'{prefix}workers')}",
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


def sim_duplicates(ledger: dict[str, dict[str, object]]) -> list[str]:
    return [i for i, entry in ledger.items() if entry["submissions"] != 1]

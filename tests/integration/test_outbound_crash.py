"""A worker SIGKILLed in the middle of Ardary calls, then restarted: no SMS twice, one result."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from uuid import uuid4

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
        accepted_at_kill = sim.stats()["unique_ids"]
        assert accepted_at_kill < N, "the kill came too late to land mid-run"

        worker.start()  # same data dir: the RocksDB table and the changelog survive
        by_id = results.wait_ids(ids, timeout=120)
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


def sim_duplicates(ledger: dict[str, dict[str, object]]) -> list[str]:
    return [i for i, entry in ledger.items() if entry["submissions"] != 1]

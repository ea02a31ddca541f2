"""A rebalance while the outbound worker has a backlog: every request still gets one result.

The 90-s chaos run (issue 18) lost 59 requests and stalled the workers' group after a rebalance
that found the worker rate-limited, with low-priority requests waiting in its batcher and
urgent ones (later offsets) in Ardary calls. The calls awaited by the revocation finished
before the new assignment, their events were acked out of order, and faust committed them: the
group's offset jumped past the dropped low-priority requests. Here a second worker joining is
the rebalance; the simulator's latency keeps the first worker's calls in flight across it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from uuid import uuid4

import pytest

from pipeline.kafka.admin import ensure_topics
from tests.integration.test_outbound_crash import committed_offsets, diagnosis
from tests.integration.test_outbound_support import (
    SimulatorProcess,
    publish,
    request,
    worker_env,
)
from tests.kafka_read import TopicReader, read_topic
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

N = 400  # 20 s of sending at RATE: the rebalance lands in the first quarter
RATE = 20.0


def _ends(bootstrap: str, topic: str) -> dict[int, int]:
    ends: dict[int, int] = {}
    for record in read_topic(bootstrap, topic):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


def test_a_rebalance_during_a_backlog_loses_no_request(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_bootstrap, unique_prefix, 4)
    sim = SimulatorProcess(tmp_path, "--latency-ms", "2500")
    env = worker_env(kafka_bootstrap, unique_prefix, sim, OUTBOUND_RATE_PER_SECOND=str(RATE))
    topic = f"{unique_prefix}sms.send-requests"
    results = TopicReader(kafka_bootstrap, f"{unique_prefix}sms.send-results")
    first = WorkerProcess(env, "outbound", tmp_path / "w1")
    second = WorkerProcess(env, "outbound", tmp_path / "w2")
    try:
        first.start()
        ids = [f"rebal-{uuid4().hex[:8]}-{i}" for i in range(N)]
        # urgent and routine requests interleaved: with a backlog the urgent ones go first and
        # the routine ones, at lower offsets, wait in the batcher
        publish(
            kafka_bootstrap,
            topic,
            (request(i, priority=2 if n % 2 else 0) for n, i in enumerate(ids)),
        )
        wait_for(lambda: sim.stats()["unique_ids"] >= 20, 60, "the backlog being sent")
        assert sim.stats()["unique_ids"] < N // 4, "the rebalance came too late"
        second.start()  # the rebalance, with the first worker's calls in flight
        try:
            by_id = results.wait_ids(ids, timeout=150)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\n{diagnosis(kafka_bootstrap, unique_prefix, ids, results, sim, first)}"
            ) from None
        ends = _ends(kafka_bootstrap, topic)
        wait_for(
            lambda: committed_offsets(kafka_bootstrap, f"{unique_prefix}workers") == ends,
            60,
            f"the group's offsets at the end {ends}",
        )
    finally:
        second.stop()
        first.stop()
        sim.stop()
        results.close()
    counts = Counter(len(by_id[i]) for i in ids)
    assert counts == {1: N}, f"results per id: {counts}"

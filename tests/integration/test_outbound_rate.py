"""Two outbound workers share one global rate: together they stay at it, never well above."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from pipeline.kafka.admin import ensure_topics
from tests.integration.test_outbound_support import (
    SimulatorProcess,
    publish,
    request,
    worker_env,
)
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

RATE = 40.0
SECONDS = 6.0
BEST_SECONDS = 3.0


def _peak(stamps: list[float]) -> int:
    return _busiest(stamps, 1.0)


def _busiest(stamps: list[float], seconds: float) -> int:
    """The most stamps (sorted) in any closed window of `seconds`."""
    return max(sum(1 for t in stamps[k:] if t <= s + seconds) for k, s in enumerate(stamps))


def _group_stable_with(admin: object, group: str, members: int) -> bool:
    g = admin.describe_groups([group])[group]  # type: ignore[attr-defined]
    return bool(g["group_state"] == "Stable" and len(g["members"]) == members)


def test_two_workers_share_one_rate(
    kafka_bootstrap: str, kafka_admin: object, unique_prefix: str, tmp_path: Path
) -> None:
    ensure_topics(kafka_bootstrap, unique_prefix, 4)
    sim = SimulatorProcess(tmp_path, "--latency-ms", "20")
    env = worker_env(kafka_bootstrap, unique_prefix, sim, OUTBOUND_RATE_PER_SECOND=str(RATE))
    workers = [WorkerProcess(env, "outbound", tmp_path / f"w{i}") for i in range(2)]
    total = int(RATE * (SECONDS + 3))
    try:
        for w in workers:
            w.start()
        wait_for(
            lambda: _group_stable_with(kafka_admin, f"{unique_prefix}workers", 2),
            60,
            "both workers in the group",
        )
        ids = [f"rate-{uuid4().hex[:8]}-{i}" for i in range(total)]
        publish(kafka_bootstrap, f"{unique_prefix}sms.send-requests", (request(i) for i in ids))
        wait_for(lambda: sim.stats()["unique_ids"] >= total, 60, "every message sent")
        ledger = sim.ledger()
        stats = sim.stats()
    finally:
        for w in workers:
            w.stop()
        sim.stop()

    assert stats["duplicate_ids"] == 0
    stamps = sorted(e["first_accepted_at"] for e in ledger.values())
    start = stamps[0] + 1.0  # skip the first second (both buckets start with a burst)
    window = [t for t in stamps if start <= t < start + SECONDS]
    achieved = len(window) / SECONDS
    assert achieved <= RATE * 1.1, achieved  # never above the rate: a busy box cannot break it
    # At the whole rate, not a share of it, in the busiest 3 s after the start: a box busy enough
    # to stall the workers for a while (21.3/s over these 6 s beside a two-process CPU hog)
    # still leaves a stretch where both run; with the rate divided twice none would pass half.
    busiest = _busiest([t for t in stamps if t >= start], BEST_SECONDS)
    assert busiest >= RATE * BEST_SECONDS * 0.75, (busiest, achieved)
    # each worker alone runs at half the rate: without the division it would be twice RATE.
    # A worker paces its calls (OUTBOUND_PACING_SECONDS, 0.25 s: 4 calls a second of 5
    # messages each); the simulator stamps a call when it gets to it, so one 1-s window of its
    # clock may hold one call more per worker than the workers' own clocks allowed.
    per_call = RATE / 2 * 0.25
    assert _peak(window) <= RATE * 1.1 + 2 * per_call

"""The chaos run's fault schedule: every fault once, the broker faults apart, the overlaps the
issue asks for, the spool kill inside the cluster stop, and the same plan for the same seed."""

from __future__ import annotations

import itertools

import pytest

from pipeline.devtools.chaos.schedule import (
    BROKER_FAULTS,
    Fault,
    plan_faults,
    steps_of,
)

SEEDS = range(40)
KINDS = {
    "broker_kill",
    "broker_pause",
    "cluster_stop",
    "worker_kill",
    "sink_kill",
    "ingress_term",
    "ingress_kill_spooled",
}


def _end(f: Fault) -> float:
    return f.at + f.hold


def _overlap(a: Fault, b: Fault) -> bool:
    return a.at < _end(b) and b.at < _end(a)


@pytest.mark.parametrize("seconds", [60.0, 180.0, 600.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_fault_once_inside_the_load(seconds: float, seed: int) -> None:
    faults = plan_faults(seconds, seed)
    assert sorted(f.kind for f in faults) == sorted(KINDS)
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    for f in faults:
        assert f.at >= 10.0 and _end(f) < seconds, f


@pytest.mark.parametrize("seed", SEEDS)
def test_broker_faults_never_overlap_and_leave_room_to_recover(seed: int) -> None:
    brokers = [f for f in plan_faults(180, seed) if f.kind in BROKER_FAULTS]
    for a, b in itertools.pairwise(brokers):
        assert _end(a) + 10 <= b.at, (a, b)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_spool_kill_is_inside_the_cluster_stop_and_one_fault_overlaps_a_broker_fault(
    seed: int,
) -> None:
    faults = {f.kind: f for f in plan_faults(180, seed)}
    stop, kill = faults["cluster_stop"], faults["ingress_kill_spooled"]
    assert stop.at < kill.at and _end(kill) < _end(stop)
    hurt = [faults["broker_kill"], faults["broker_pause"]]
    process = [faults[k] for k in ("worker_kill", "sink_kill", "ingress_term")]
    assert any(_overlap(p, b) for p in process for b in hurt)


def test_full_length_durations_are_the_issues_and_shorter_runs_scale_down() -> None:
    full = {f.kind: f.hold for f in plan_faults(180, 3)}
    assert full["broker_pause"] == 20 and full["cluster_stop"] == 30
    short = {f.kind: f.hold for f in plan_faults(60, 3)}
    assert short["cluster_stop"] == pytest.approx(10) and short["broker_pause"] == pytest.approx(
        6.67
    )


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert plan_faults(180, 7) == plan_faults(180, 7)
    assert plan_faults(180, 7) != plan_faults(180, 8)


def test_steps_begin_and_end_each_fault_in_time_order() -> None:
    faults = plan_faults(120, 5)
    steps = steps_of(faults)
    assert len(steps) == 2 * len(faults)
    assert [s.at for s in steps] == sorted(s.at for s in steps)
    for f in faults:
        begin = next(s for s in steps if s.fault == f and s.phase == "begin")
        end = next(s for s in steps if s.fault == f and s.phase == "end")
        assert steps.index(begin) < steps.index(end)
        assert end.at == pytest.approx(f.at + f.hold)

"""The chaos run's fault schedule: every fault once, the broker faults apart, the overlaps the
issue asks for, the spool kill inside the cluster stop, and the same plan for the same seed."""

from __future__ import annotations

import itertools

import pytest

from pipeline.devtools.chaos.schedule import (
    BROKER_FAULTS,
    Fault,
    Timetable,
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


Done = list[tuple[str, str, float]]


def _carry_out(table: Timetable, took: dict[tuple[str, str], float]) -> Done:
    """Run the timetable on a simulated clock: each step takes `took[(kind, phase)]` (else 0)."""
    now, done = 0.0, []
    while table.pending:
        step = table.next_due(now)
        if step is None:
            now = round(now + 0.1, 1)
            continue
        spent = took.get((step.fault.kind, step.phase), 0.0)
        table.done(step, now, spent)
        done.append((step.fault.kind, step.phase, now))
        now += spent
    return done


def test_a_blocking_step_delays_the_begins_after_it_and_every_fault_keeps_its_length() -> None:
    faults = plan_faults(90, 1)
    stop = next(f for f in faults if f.kind == "cluster_stop")
    done = _carry_out(Timetable(steps_of(faults)), {("cluster_stop", "end"): 45.0})
    at = {(kind, phase): t for kind, phase, t in done}
    assert len(done) == 2 * len(faults)
    # every fault lasts its hold from the moment it began (within the clock's tick)
    for f in faults:
        assert at[(f.kind, "end")] - at[(f.kind, "begin")] == pytest.approx(f.hold, abs=0.15)
    # the faults planned after the cluster's restart keep their distance from it, 44 s later
    for f in faults:
        if f.at > stop.at + stop.hold:
            assert at[(f.kind, "begin")] == pytest.approx(f.at + 44.0, abs=0.5), f
    # the spool kill stays inside the cluster stop
    assert at[("cluster_stop", "begin")] < at[("ingress_kill_spooled", "begin")]
    assert at[("ingress_kill_spooled", "end")] < at[("cluster_stop", "end")]


def test_on_time_steps_run_at_their_planned_times() -> None:
    faults = plan_faults(120, 4)
    done = _carry_out(Timetable(steps_of(faults)), {})
    planned = {(s.fault.kind, s.phase): s.at for s in steps_of(faults)}
    for kind, phase, t in done:
        assert t == pytest.approx(planned[(kind, phase)], abs=0.15)

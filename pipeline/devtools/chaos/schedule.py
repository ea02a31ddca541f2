"""The chaos run's fault schedule: which faults, when, for how long — pure and seeded.

Seven faults per run, as issue 18 lists them. The three broker faults (a partition leader
SIGKILLed, a node SIGSTOPped, the whole cluster stopped) never overlap one another: the local
cluster restarts a node by waiting until the cluster lists every broker again, which a paused
or stopped node would hold up. The process faults (a worker SIGKILLed mid-batch, the sink
SIGKILLed, the ingress SIGTERMed) fall anywhere in the window, so some land inside a broker
fault and some in calm water; the ingress SIGKILL with spooled callbacks falls inside the
cluster stop, the only time the spool is sure to hold something.

Durations are the issue's (a 20 s pause, a 30 s cluster stop) for runs of 180 s or more, and
shrink in proportion for shorter runs (the test suite's short version), never below a floor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, TypeAlias

__all__ = [
    "BROKER_FAULTS",
    "FULL_RUN_SECONDS",
    "Fault",
    "FaultKind",
    "Step",
    "Timetable",
    "plan_faults",
    "steps_of",
]

FaultKind: TypeAlias = Literal[
    "broker_kill",
    "broker_pause",
    "cluster_stop",
    "worker_kill",
    "sink_kill",
    "ingress_term",
    "ingress_kill_spooled",
]
BROKER_FAULTS: tuple[FaultKind, ...] = ("broker_kill", "broker_pause", "cluster_stop")
FULL_RUN_SECONDS = 180.0
ON_TIME_S = 1.0  # a step taking longer than this delays the schedule after it

# seconds each fault lasts in a full run: until the restart, the SIGCONT, the cluster start
_HOLD: dict[FaultKind, float] = {
    "broker_kill": 10.0,
    "broker_pause": 20.0,
    "cluster_stop": 30.0,
    "worker_kill": 3.0,
    "sink_kill": 3.0,
    "ingress_term": 1.0,
    "ingress_kill_spooled": 2.0,
}
_RECOVERY_S = 12.0  # after a broker fault ends, before the next one begins (full run)
_FIRST_S = 0.08  # faults start after this share of the run (steady state first) ...
_LAST_S = 0.85  # ... and begin before this share, so the tail is calm


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: begins `at` seconds into the load, recovered `hold` seconds later.

    `target` says whom it hits: `leader` (a leader of a `sms.send-requests` partition),
    `node` (a broker drawn with `pick`), `cluster`, `worker`, `sink` or `ingress`;
    `pick` is the seeded draw that chooses among candidates when the fault begins.
    """

    kind: FaultKind
    at: float
    hold: float
    target: str
    pick: int


@dataclass(frozen=True, slots=True)
class Step:
    """One action of the timeline: a fault's `begin` or its `end` (the recovery)."""

    at: float
    phase: Literal["begin", "end"]
    fault: Fault


def _scale(seconds: float) -> float:
    return max(0.2, min(1.0, seconds / FULL_RUN_SECONDS))


def _hold(kind: FaultKind, scale: float) -> float:
    floor = 1.0 if kind in ("ingress_term", "ingress_kill_spooled") else 3.0
    return round(max(floor, _HOLD[kind] * scale), 2)


_TARGET: dict[FaultKind, str] = {
    "broker_kill": "leader",
    "broker_pause": "node",
    "cluster_stop": "cluster",
    "worker_kill": "worker",
    "sink_kill": "sink",
    "ingress_term": "ingress",
    "ingress_kill_spooled": "ingress",
}


def plan_faults(seconds: float, seed: int) -> tuple[Fault, ...]:
    """The run's faults, sorted by start time; the same seed and length give the same plan."""
    rng = random.Random(f"chaos:{seed}")
    scale = _scale(seconds)
    first, last = max(10.0, seconds * _FIRST_S), seconds * _LAST_S
    recovery = _RECOVERY_S * scale
    order = list(BROKER_FAULTS)
    rng.shuffle(order)
    holds = [_hold(kind, scale) for kind in order]
    busy = sum(holds) + recovery * len(order)
    slack = max(0.0, last - first - busy)
    cuts = sorted(rng.uniform(0, slack) for _ in order)
    gaps = [b - a for a, b in zip([0.0, *cuts[:-1]], cuts, strict=True)]
    faults: list[Fault] = []
    t = first
    for kind, hold, gap in zip(order, holds, gaps, strict=True):
        t += gap
        faults.append(Fault(kind, round(t, 2), hold, _TARGET[kind], rng.randrange(1 << 16)))
        t += hold + recovery
    stop = next(f for f in faults if f.kind == "cluster_stop")
    # inside the cluster stop, once callbacks have had time to pile up in the spool
    kill_at = stop.at + stop.hold * rng.uniform(0.35, 0.5)
    faults.append(
        Fault(
            "ingress_kill_spooled",
            round(kill_at, 2),
            _hold("ingress_kill_spooled", scale),
            "ingress",
            rng.randrange(1 << 16),
        )
    )
    # the process faults: one inside a broker fault (the overlap), the others anywhere
    inside = rng.choice([f for f in faults if f.kind in ("broker_kill", "broker_pause")])
    kinds: list[FaultKind] = ["worker_kill", "sink_kill", "ingress_term"]
    rng.shuffle(kinds)
    for n, kind in enumerate(kinds):
        if n == 0:
            at = inside.at + inside.hold * rng.uniform(0.2, 0.6)
        else:
            at = _clear_of(rng, first, last, faults, avoid=stop)
        faults.append(
            Fault(kind, round(at, 2), _hold(kind, scale), _TARGET[kind], rng.randrange(1 << 16))
        )
    return tuple(sorted(faults, key=lambda f: f.at))


def _clear_of(
    rng: random.Random, first: float, last: float, faults: list[Fault], avoid: Fault
) -> float:
    """A time in [first, last] outside `avoid` (its restart) and 2 s away from other starts.

    A process fault during the cluster stop would only test what `ingress_kill_spooled`
    already does; the draw is retried a bounded number of times, then taken as it is.
    """
    at = rng.uniform(first, last)
    for _ in range(50):
        inside = avoid.at - 2 <= at <= avoid.at + avoid.hold + 5
        crowded = any(abs(at - f.at) < 2 for f in faults)
        if not inside and not crowded:
            break
        at = rng.uniform(first, last)
    return at


def steps_of(faults: tuple[Fault, ...]) -> tuple[Step, ...]:
    """Every fault's begin and end, in time order (a begin before an end at the same time)."""
    steps = [Step(f.at, "begin", f) for f in faults]
    steps += [Step(round(f.at + f.hold, 2), "end", f) for f in faults]
    return tuple(sorted(steps, key=lambda s: (s.at, s.phase != "begin")))


class Timetable:
    """When each pending step is due, as steps are carried out: a begin at its planned time
    plus the delay so far, an end `hold` seconds after its fault took effect (its begin step
    done). A step that takes longer than `ON_TIME_S` delays every begin after it by as much:
    each fault keeps its length and its place among the others."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.pending = list(steps)
        self.delay = 0.0
        self._began: dict[Fault, float] = {}

    def due(self, step: Step) -> float:
        if step.phase == "end" and step.fault in self._began:
            return self._began[step.fault] + step.fault.hold
        return step.at + self.delay

    def next_due(self, now: float) -> Step | None:
        if not self.pending:
            return None
        step = min(self.pending, key=self.due)  # min keeps the first of equals: plan order
        return step if self.due(step) <= now else None

    def done(self, step: Step, started: float, took: float) -> None:
        self.pending.remove(step)
        if step.phase == "begin":
            self._began[step.fault] = started + took  # in effect once the step is done
        self.delay += max(0.0, took - ON_TIME_S)

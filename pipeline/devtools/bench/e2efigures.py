"""`bench e2e`'s figures: stage rates in messages/s, the slowest stage, the completion check,
each process's CPU per message, and the lines the benchmark prints (pure, no I/O but the load
average)."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PipelineError

__all__ = [
    "BOX_BUSY_SHARE",
    "CORRELATE_SOURCES",
    "IDLE_SECONDS",
    "PIPELINE_PROCESSES",
    "WORKER_BUSY_CORES",
    "Cost",
    "CpuSample",
    "E2eRun",
    "PerMessage",
    "ProcessCpu",
    "Saturation",
    "StageRate",
    "callback_bound",
    "cost_of",
    "cpu_breakdown",
    "delivered_rate_between",
    "histogram_sum_count",
    "is_complete",
    "per_message",
    "report",
    "saturation",
    "slowest",
    "stage_sizes",
    "stages_per_message",
    "timeshared_msgs_per_s",
]

CORRELATE_SOURCES = (
    "sms.send-requests",
    "sms.send-results",
    "callbacks.status",
    "callbacks.clicks",
)
"""The topics the correlate agent reads: its events (`bench correlate`'s SOURCES)."""
IDLE_SECONDS = 5.0  # the stack's own CPU with no traffic is measured over this long
PIPELINE_PROCESSES = ("ingress", "worker", "sink", "broker")
"""What a deployment runs: the processes `e2e_cpu_ms_per_msg` counts (the simulator stands in for
Ardary and the bench's own publisher and reader for the upstream apps: printed apart)."""
BOX_BUSY_SHARE = 0.9  # the machine counts as saturated at this share of its cores busy
# the worker counts as saturated at this many cores: its Python threads share one GIL, so one
# core is its ceiling (measured: 0.83-0.92 while it alone drained a backlog, the rest idle)
WORKER_BUSY_CORES = 0.8


@dataclass(frozen=True, slots=True)
class StageRate:
    """One stage measured alone: its rate in its own unit, and that unit's cost per message."""

    name: str
    rate: float  # `unit` per second
    unit: str
    per_message: float  # `unit`s one message costs this stage in the e2e run
    size: str  # what was measured, for the output

    @property
    def msgs_per_s(self) -> float:
        """The stage's rate in messages/s (0 if a message cost it nothing: no figure)."""
        return self.rate / self.per_message if self.per_message > 0 else 0.0


def slowest(stages: Sequence[StageRate]) -> StageRate:
    """The stage with the lowest messages/s, of those with a figure: a stage whose run was too
    short for its clock (0 or infinite) or that a message did not reach has none."""
    measured = [s for s in stages if 0 < s.msgs_per_s < math.inf]
    if not measured:
        raise PipelineError("no stage has a messages/s figure: every stage's run was too short")
    return min(measured, key=lambda s: s.msgs_per_s)


@dataclass(frozen=True, slots=True)
class PerMessage:
    """What one message of the e2e run cost each stage, from the records on its topics."""

    status_callbacks: float  # on callbacks.status: what the ingress took per message
    events: float  # on the correlate agent's four input topics
    lifecycles: float  # on sms.lifecycle: what the sink loads into sms_lifecycle
    sink_records: float  # on every topic the sink loads (sms_lifecycle and the others)


def per_message(counts: Mapping[str, int], requests: int, sink_topics: Sequence[str]) -> PerMessage:
    """Records per message from `counts` (unprefixed topic name → records on it)."""
    if requests <= 0:
        raise ValueError("requests must be positive")

    def of(names: Sequence[str]) -> float:
        return sum(counts.get(n, 0) for n in names) / requests

    return PerMessage(
        status_callbacks=of(["callbacks.status"]),
        events=of(CORRELATE_SOURCES),
        lifecycles=of(["sms.lifecycle"]),
        sink_records=of(sink_topics),
    )


def is_complete(delivered: int, requests: int, sink_lag: int | None) -> bool:
    """Whether the warehouse has every message DELIVERED, as Kafka tells it: `sms.lifecycle`
    shows all `requests` DELIVERED and the sink's group committed all it reads (lag 0; None:
    not asked yet)."""
    return delivered >= requests and sink_lag == 0


def delivered_rate_between(
    seen_at: Sequence[float], low: float = 0.1, high: float = 0.9
) -> float | None:
    """Messages/s while the `low` to `high` share of them turned DELIVERED (sorted observation
    times): the rate with the ramp-up and the drain left out. None with fewer than 10."""
    if len(seen_at) < 10:
        return None
    ordered = sorted(seen_at)
    first, last = round(low * (len(ordered) - 1)), round(high * (len(ordered) - 1))
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else None


@dataclass(frozen=True, slots=True)
class ProcessCpu:
    """One process of the e2e run: the cores it used idle and during the run, and the CPU one
    message cost it above its idle use."""

    name: str
    idle_cores: float
    cores: float
    ms_per_message: float

    @property
    def ceiling_msgs_per_s(self) -> float | None:
        """Messages/s this process could take with one whole core at this cost per message."""
        return 1000.0 / self.ms_per_message if self.ms_per_message > 0 else None


def cpu_breakdown(
    idle_cores: Mapping[str, float],
    cpu_seconds: Mapping[str, float],
    seconds: float,
    requests: int,
) -> list[ProcessCpu]:
    """Each process's CPU over a run of `seconds` and `requests` messages, the most per message
    first; what it would have spent idle over the run is not counted against the messages."""
    found = []
    for name, cpu in cpu_seconds.items():
        idle = idle_cores.get(name, 0.0)
        work = max(0.0, cpu - idle * seconds)
        found.append(ProcessCpu(name, idle, cpu / seconds, 1000.0 * work / requests))
    return sorted(found, key=lambda p: -p.ms_per_message)


@dataclass(frozen=True, slots=True)
class Cost:
    """What one message cost above idle, in ms of CPU: the pipeline's processes together, the
    worker alone, and each process outside the pipeline (not counted in `pipeline_ms`)."""

    pipeline_ms: float
    worker_ms: float
    outside_ms: dict[str, float]


def cost_of(procs: Sequence[ProcessCpu]) -> Cost:
    """The e2e run's cost per message from its processes (`cpu_breakdown`)."""
    mine = {p.name: p.ms_per_message for p in procs}
    return Cost(
        pipeline_ms=sum(mine.get(name, 0.0) for name in PIPELINE_PROCESSES),
        worker_ms=mine.get("worker", 0.0),
        outside_ms={n: ms for n, ms in mine.items() if n not in PIPELINE_PROCESSES},
    )


def timeshared_msgs_per_s(stages: Sequence[StageRate]) -> float | None:
    """Messages/s of the stages run one after another, each with the machine to itself:
    1 / Σ 1/rate (what pipelining must at least match). None if no stage has a figure."""
    rates = [s.msgs_per_s for s in stages if 0 < s.msgs_per_s < math.inf]
    return 1.0 / sum(1.0 / r for r in rates) if rates else None


def stage_sizes(requests: int) -> dict[str, int]:
    """The stages' reduced sizes for an e2e run of `requests` messages (at least a few Ardary
    calls of 100 and a few polls of records, so no stage ends inside one tick of its clock)."""
    n = max(1000, requests)
    return {"outbound": n, "correlate": 4 * n, "sink": 4 * n}


def histogram_sum_count(text: str, name: str) -> tuple[float, float]:
    """(sum, count) of the Prometheus histogram `name` in an exposition `text` ((0, 0) if
    absent)."""
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"{name}_{part} ") or line.startswith(f"{name}_{part}{{"):
                found[part] = float(line.rsplit(" ", 1)[1])
    return found["sum"], found["count"]


def callback_bound(concurrency: int, answer_seconds: float, per_message: float) -> float | None:
    """Messages/s a sender of `concurrency` callbacks at a time can reach when each takes at
    least `answer_seconds` to be answered and a message has `per_message` of them."""
    if answer_seconds <= 0 or per_message <= 0:
        return None
    return concurrency / answer_seconds / per_message


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU counters read at one moment of the e2e run."""

    at: float  # monotonic seconds
    machine: float  # busy CPU seconds of the whole machine so far, all cores
    worker: float  # CPU seconds of the worker's process tree so far


@dataclass(frozen=True, slots=True)
class Saturation:
    """How long, of a run's sampled `seconds`, the machine and the worker were saturated."""

    seconds: float
    machine: float  # the machine at BOX_BUSY_SHARE of its cores or more
    worker: float  # the worker at WORKER_BUSY_CORES or more
    either: float  # one or the other: time when CPU, not waiting, set the pace

    @property
    def share(self) -> float:
        """The share of the run when the machine or the worker had no CPU to spare."""
        return self.either / self.seconds if self.seconds > 0 else 0.0


def saturation(samples: Sequence[CpuSample], cores: int) -> Saturation:
    """Sum the intervals between consecutive `samples` in which the machine was at least
    BOX_BUSY_SHARE busy, the worker at least WORKER_BUSY_CORES busy, and either."""
    seconds = machine = worker = either = 0.0
    for a, b in itertools.pairwise(samples):
        dt = b.at - a.at
        if dt <= 0:
            continue
        box_full = (b.machine - a.machine) / dt >= BOX_BUSY_SHARE * cores
        worker_full = (b.worker - a.worker) / dt >= WORKER_BUSY_CORES
        seconds += dt
        machine += dt if box_full else 0.0
        worker += dt if worker_full else 0.0
        either += dt if box_full or worker_full else 0.0
    return Saturation(seconds, machine, worker, either)


@dataclass
class E2eRun:
    """The whole pipeline's run: its timings, what it cost, what the warehouse held."""

    requests: int
    seconds: float = 0.0
    published_in: float = 0.0
    delivered_seen_in: float = 0.0
    steady_msgs_per_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    idle_cores: dict[str, float] = field(default_factory=dict)  # before the first publish
    warehouse_rows: int = 0
    warehouse_delivered: int = 0
    ingress_ack_seconds: float | None = None  # mean publish → broker ack of a callback
    sends_accepted_in: float = 0.0  # the simulator accepted the last send this long after
    cpu_samples: list[CpuSample] = field(default_factory=list)  # from the first publish on

    @property
    def msgs_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def stages_per_message(raw: Mapping[str, tuple[float, str]], per: PerMessage) -> list[StageRate]:
    """The stages' own rates with what one message costs each in the e2e run."""
    units = {
        "outbound": ("send requests", 1.0),
        "ingress": ("status callbacks", per.status_callbacks),
        "correlate": ("events", per.events),
        "sink": ("lifecycle rows", per.lifecycles),
    }
    return [
        StageRate(name, raw[name][0], unit, cost, raw[name][1])
        for name, (unit, cost) in units.items()
        if name in raw
    ]


def report(
    raw: Mapping[str, tuple[float, str]],
    run: E2eRun,
    sink_topics: Sequence[str],
    echo: Callable[[str], Any],
) -> None:
    """Print the figures of `raw` (stage → its own rate, what was measured) and `run`, then the
    RATIO lines; `sink_topics` are the unprefixed names of the topics the sink loads."""
    per = per_message(run.counts, run.requests, sink_topics)
    stages = stages_per_message(raw, per)
    low = slowest(stages)
    echo(
        f"e2e per message (records on the run's topics ÷ {run.requests:,}): "
        f"{per.status_callbacks:.2f} status callbacks, {per.events:.2f} correlate events, "
        f"{per.lifecycles:.2f} lifecycle records, {per.sink_records:.2f} records the sink loads"
    )
    for s in stages:
        mark = "  <- slowest" if s is low else ""
        if not 0 < s.msgs_per_s < math.inf:
            mark = "  (no figure: the run was too short for its clock)"
        echo(
            f"stage alone: {s.name:<9} {s.rate:>9,.0f} {s.unit}/s ÷ {s.per_message:.2f} per "
            f"message = {s.msgs_per_s:>8,.0f} msgs/s ({s.size}){mark}"
        )
    steady = run.steady_msgs_per_s
    echo(
        f"e2e: {run.requests:,} send requests published in {run.published_in:.1f} s; all "
        f"DELIVERED on sms.lifecycle at {run.delivered_seen_in:.1f} s, in the warehouse (sink "
        f"lag 0) at {run.seconds:.1f} s from the first publish: {run.msgs_per_s:,.0f} msgs/s "
        f"(no warm-up left out: the stack was up and every group joined before the first "
        f"publish); 10%→90% of DELIVERED on sms.lifecycle: "
        + (f"{steady:,.0f} msgs/s" if steady is not None else "-")
    )
    echo(
        f"warehouse check: sms_lifecycle holds {run.warehouse_rows:,} of {run.requests:,} "
        f"messages, {run.warehouse_delivered:,} DELIVERED: passed"
    )
    procs = (
        cpu_breakdown(run.idle_cores, run.cpu_seconds, run.seconds, run.requests)
        if run.seconds > 0 and run.cpu_seconds
        else []
    )
    for line in _limits(run, per, low.msgs_per_s, procs):
        echo(line)
    cost = cost_of(procs) if procs else None
    if cost is not None:
        echo(
            f"e2e cost: {cost.pipeline_ms:.2f} ms of CPU per message above idle in the "
            f"pipeline's processes ({' + '.join(PIPELINE_PROCESSES)}), the worker "
            f"{cost.worker_ms:.2f} of it; apart, not counted: "
            + ", ".join(f"{n} {ms:.2f} ms" for n, ms in sorted(cost.outside_ms.items()))
        )
    timeshared = timeshared_msgs_per_s(stages)
    lag = max(0.0, run.seconds - run.delivered_seen_in)
    echo(
        "e2e against the stages one after another (1 / Σ 1/rate of the stages alone): "
        + (f"{timeshared:,.0f} msgs/s" if timeshared else "-")
        + f"; the warehouse trailed sms.lifecycle by {lag:.1f} s (last DELIVERED on the topic "
        "→ the sink's lag 0)"
    )
    busy = saturation(run.cpu_samples, os.cpu_count() or 1)
    if busy.seconds > 0:
        echo(
            f"e2e CPU over time (sampled every ~{busy.seconds / (len(run.cpu_samples) - 1):.1f} "
            f"s): the machine at ≥ {BOX_BUSY_SHARE:.0%} of its {os.cpu_count()} cores for "
            f"{busy.machine:.1f} s of {busy.seconds:.1f}; the worker (one Python process: one "
            f"core is its ceiling) at ≥ {WORKER_BUSY_CORES} of a core for {busy.worker:.1f} s; "
            f"one or the other for {busy.either:.1f} s ({busy.share:.0%}): "
            + (
                "CPU set the pace nearly throughout"
                if busy.share >= 0.8
                else f"for the other {1 - busy.share:.0%} something else set the pace (a wait)"
            )
        )
        echo(f"RATIO e2e_cpu_saturated_share={busy.share:.2f}")
    echo(f"RATIO e2e_msgs_per_s={run.msgs_per_s:.1f}")
    echo(f"RATIO slowest_stage_msgs_per_s={low.msgs_per_s:.1f}")
    if cost is not None:
        echo(f"RATIO e2e_cpu_ms_per_msg={cost.pipeline_ms:.2f}")
        echo(f"RATIO worker_cpu_ms_per_msg={cost.worker_ms:.2f}")
    if timeshared:
        echo(f"RATIO e2e_vs_timeshared_stages={run.msgs_per_s / timeshared:.2f}")
    echo(f"RATIO warehouse_lag_seconds={lag:.1f}")


def _limits(
    run: E2eRun, per: PerMessage, slowest_alone: float, procs: Sequence[ProcessCpu]
) -> list[str]:
    """What held the e2e run: each process's CPU (idle, during the run, per message above
    idle) against the machine's cores, and what the callback path allows."""
    from pipeline.devtools.simulator.config import SimulatorConfig

    cores = os.cpu_count() or 1
    if not procs:
        return []
    total = sum(p.cores for p in procs)
    load = os.getloadavg()[0]
    lines = [
        f"e2e CPU by process: cores idle ({IDLE_SECONDS:g} s before the first publish) → "
        "during the run, and ms of CPU per message above idle: "
        + "; ".join(
            f"{p.name} {p.idle_cores:.2f} → {p.cores:.2f}, {p.ms_per_message:.2f} ms" for p in procs
        )
        + f"; in all {total:.2f} of {cores} cores, load average {load:.1f} after it (other "
        "work on this machine included)"
    ]
    concurrency = SimulatorConfig().callback_concurrency
    ack = run.ingress_ack_seconds
    bound = callback_bound(concurrency, ack, per.status_callbacks) if ack else None
    if ack is not None and bound is not None:
        lines.append(
            f"e2e ingress: mean publish → broker ack {ack * 1000:.1f} ms per callback; with at "
            f"most {concurrency} callbacks in flight (the simulator's) that alone caps the run "
            f"at {bound:,.0f} msgs/s"
        )
    callbacks = per.status_callbacks * run.requests
    after_sends = run.delivered_seen_in - run.sends_accepted_in
    sim = next((p for p in procs if p.name == "simulator"), None)
    if run.delivered_seen_in > 0:
        pace = (
            "the callback path (the simulator's sender → the ingress) set the pace"
            if after_sends > run.sends_accepted_in
            else "the sends took most of the run"
        )
        per_callback = (
            f"; the simulator spent {sim.ms_per_message / per.status_callbacks:.1f} ms of CPU "
            "per callback (its aiohttp sender)"
            if sim is not None and per.status_callbacks > 0
            else ""
        )
        lines.append(
            f"e2e pace: the simulator had accepted all {run.requests:,} sends "
            f"{run.sends_accepted_in:.0f} s after the first publish (to its second); the last "
            f"message turned DELIVERED {after_sends:.0f} s later, "
            f"{callbacks / run.delivered_seen_in:,.0f} status callbacks/s over the run: "
            f"{pace}{per_callback}"
        )
    top = procs[0]
    spent = sum(p.ms_per_message for p in procs)
    ceiling = top.ceiling_msgs_per_s
    lines.append(
        f"what limits it: CPU — at this pace the run's processes together spent {spent:.1f} ms "
        f"of CPU per message above idle, in small batches (the slowest stage alone, fed a "
        f"backlog, took {1000.0 / slowest_alone:.2f} ms of its core per message), on the "
        f"{total:.2f} of {cores} cores they got (the rest: other work, load average "
        f"{load:.1f}). Most per message: the {top.name}, {top.ms_per_message:.2f} ms ("
        + (f"{ceiling:,.0f} msgs/s on one whole core" if ceiling else "-")
        + ")"
    )
    return lines

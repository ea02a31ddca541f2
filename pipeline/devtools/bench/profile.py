"""`bench ingress --profile`: where the ingress's CPU goes, from py-spy's raw stacks and /proc.

Pure logic, no I/O: the benchmark records py-spy's `--format raw --threads --subprocesses`
output (one `frame;frame;…;frame count` line per distinct stack, the process and thread as the
first frames) and the CPU seconds of every thread before and after the profiled load; this
module turns them into CPU µs per callback per thread, the busiest Python thread's µs per
callback by stage, and its top self-time functions.

A sample of a thread is attributed to the stage of its innermost frame that matches one of the
stage's patterns (a substring of `function (path)`, the line number dropped): the time under
`DurableDoor.keep` that is spent in the Kafka publisher counts as Kafka, the `asyncio` frames
that a stage calls count as that stage, and what matches no pattern (the event loop's own
native work, asyncio's scheduling) is `event loop & other`. py-spy leaves idle threads out, so
a thread's samples follow its CPU time: a stage's µs per callback is its share of the thread's
samples times the thread's CPU µs per callback measured by /proc over the same load.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "OTHER",
    "STAGES",
    "Breakdown",
    "Sample",
    "Stage",
    "ThreadCpu",
    "breakdown",
    "folded",
    "parse_raw",
    "stage_of",
    "strip_line",
    "thread_cpu_delta",
]

OTHER = "event loop & other"


@dataclass(frozen=True, slots=True)
class Stage:
    """A named part of the ingress's work: the frames (`function (path)` substrings) that are it."""

    name: str
    patterns: tuple[str, ...]

    def matches(self, frame: str) -> bool:
        return any(pattern in frame for pattern in self.patterns)


STAGES: tuple[Stage, ...] = (
    Stage(
        "HTTP server glue / RSGI",
        (
            "(pipeline/ingress/rsgi.py",  # head_of, serve: granian's native protocol calls
            "(pipeline/ingress/asgi.py",
            "(pipeline/ingress/request.py",
            "(granian/_futures.py",  # granian's watcher of the request's coroutine
            "IngressApp.__rsgi__ (",
            "IngressApp.__call__ (",
        ),
    ),
    Stage(
        "app: routing, metrics, answer JSON",
        (
            "IngressApp.answer (",
            "IngressApp._is_callback_path (",
            "IngressApp._callback (",
            "IngressApp._handle (",
            "IngressApp._handle.<locals>",
            "(pipeline/ingress/metrics.py",
            "(prometheus_client/",
        ),
    ),
    Stage("URL + body decode", ("(pipeline/ingress/decode.py", "IngressApp._read (")),
    Stage("parse (Ardary callbacks)", ("(pipeline/ardary/",)),
    Stage(
        "Avro encode (+ key, topic)",
        ("(pipeline/serde.py", "(fastavro/", "IngressApp._encode (", "(pipeline/topics.py"),
    ),
    Stage(
        "durability door + spool",
        ("(pipeline/ingress/durable.py", "(pipeline/ingress/spool.py", "IngressApp._keep ("),
    ),
    Stage("Kafka producer (publisher + aiokafka)", ("(pipeline/kafka/", "(aiokafka/", "(kafka/")),
)
"""The ingress's stages, in the order of a callback's path; `OTHER` takes the rest."""

# py-spy's first frames: `process PID:"command line"` (with --subprocesses, outermost first),
# then `thread (TID)` or `thread (TID): name` (with --threads); a command line may hold `;`.
_HEAD = re.compile(
    r'(?P<processes>(?:process \d+:".*?"(?:;|$))*)'
    r"(?:thread \((?P<tid>\d+)\)(?:: (?P<name>[^;]*))?(?:;|$))?"
)
_PROCESS = re.compile(r"process (\d+):")
_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True, slots=True)
class Sample:
    """One line of py-spy's raw output: a stack (outermost first) and how often it was seen."""

    pids: tuple[int, ...]
    tid: int | None
    thread_name: str
    frames: tuple[str, ...]
    count: int


def strip_line(frame: str) -> str:
    """`f (path/x.py:12)` → `f (path/x.py)`: the same function, whatever line it was on."""
    return _LINE.sub(")", frame)


def parse_raw(text: str) -> list[Sample]:
    """py-spy's raw (collapsed-stack) output; lines that are not `stack count` are skipped."""
    samples: list[Sample] = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head = _HEAD.match(stack)  # matches every line: each part is optional
        if head is None:
            continue
        tid = head.group("tid")
        frames = tuple(strip_line(f) for f in stack[head.end() :].split(";") if f)
        pids = tuple(int(p) for p in _PROCESS.findall(head.group("processes")))
        name = head.group("name") or ""
        samples.append(Sample(pids, int(tid) if tid else None, name, frames, int(count)))
    return samples


def stage_of(frames: Sequence[str], stages: Sequence[Stage] = STAGES) -> str:
    """The stage of a stack: that of its innermost frame a stage names, else `OTHER`."""
    for frame in reversed(frames):
        for stage in stages:
            if stage.matches(frame):
                return stage.name
    return OTHER


def folded(samples: Iterable[Sample], tid: int | None) -> str:
    """One thread's stacks as collapsed stacks (flamegraph.pl, speedscope, inferno), merged."""
    counts: Counter[str] = Counter()
    for sample in samples:
        if sample.tid == tid and sample.frames:
            counts[";".join(sample.frames)] += sample.count
    return "".join(f"{stack} {n}\n" for stack, n in sorted(counts.items()))


@dataclass(frozen=True, slots=True)
class ThreadCpu:
    """A thread's user + system CPU seconds (/proc/PID/task/TID/stat)."""

    pid: int
    tid: int
    name: str
    seconds: float


def thread_cpu_delta(before: Sequence[ThreadCpu], after: Sequence[ThreadCpu]) -> list[ThreadCpu]:
    """CPU seconds each thread spent between two readings, busiest first (new threads from 0)."""
    start = {t.tid: t.seconds for t in before}
    spent = [
        ThreadCpu(t.pid, t.tid, t.name, max(0.0, t.seconds - start.get(t.tid, 0.0))) for t in after
    ]
    return sorted(spent, key=lambda t: (-t.seconds, t.tid))


@dataclass(frozen=True, slots=True)
class Breakdown:
    """CPU µs per callback by thread, and the busiest Python thread's by stage and function."""

    callbacks: int
    threads: tuple[ThreadCpu, ...]
    """CPU seconds per thread during the profiled load, busiest first."""
    main_tid: int | None
    main_samples: int
    stages: tuple[tuple[str, int], ...]
    """(stage, samples) of the main thread, in `STAGES` order, `OTHER` last."""
    top_self: tuple[tuple[str, int], ...]
    """(function, samples as the innermost frame) of the main thread, most first."""

    def us_per_callback(self, seconds: float) -> float:
        return seconds / max(1, self.callbacks) * 1e6

    @property
    def main_us(self) -> float:
        """The main thread's CPU µs per callback (/proc; 0 when it was not found there)."""
        for thread in self.threads:
            if thread.tid == self.main_tid:
                return self.us_per_callback(thread.seconds)
        return 0.0

    def share_us(self, samples: int) -> float:
        """µs per callback of `samples` of the main thread's samples."""
        return self.main_us * samples / max(1, self.main_samples)

    def lines(self) -> list[str]:
        total = self.us_per_callback(sum(t.seconds for t in self.threads))
        out = [f"CPU per callback by thread (/proc, process tree): {total:.0f} µs in all"]
        for thread in self.threads:
            us = self.us_per_callback(thread.seconds)
            if us >= 0.5:
                main = "  (main: the stages below)" if thread.tid == self.main_tid else ""
                out.append(f"  {thread.pid}/{thread.tid} {thread.name:<16} {us:7.1f} µs{main}")
        if self.main_samples == 0:
            out.append("  (no py-spy samples: no stage breakdown)")
            return out
        out.append(
            f"main thread {self.main_tid} by stage "
            f"({self.main_samples:,} py-spy samples, {self.main_us:.0f} µs per callback):"
        )
        for name, n in self.stages:
            share = n / self.main_samples
            out.append(f"  {name:<38} {self.share_us(n):6.1f} µs  {share:6.1%}")
        out.append(f"main thread's top {len(self.top_self)} functions by self time:")
        for function, n in self.top_self:
            share = n / self.main_samples
            out.append(f"  {self.share_us(n):6.1f} µs  {share:6.1%}  {function}")
        return out


def _samples_by_thread(samples: Iterable[Sample]) -> Counter[int | None]:
    counts: Counter[int | None] = Counter()
    for sample in samples:
        counts[sample.tid] += sample.count
    return counts


def breakdown(
    samples: Sequence[Sample],
    cpu: Sequence[ThreadCpu],
    callbacks: int,
    *,
    stages: Sequence[Stage] = STAGES,
    top: int = 15,
) -> Breakdown:
    """The breakdown of a profiled load; its main thread is the one py-spy sampled most in
    Python frames (the granian worker's event loop), whose CPU comes from `cpu`."""
    with_frames = _samples_by_thread(s for s in samples if s.frames)
    main_tid = with_frames.most_common(1)[0][0] if with_frames else None
    mine = [s for s in samples if s.tid == main_tid and main_tid is not None]
    by_stage: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    for sample in mine:  # a sample without Python frames is native work: `OTHER`
        by_stage[stage_of(sample.frames, stages)] += sample.count
        if sample.frames:
            by_self[sample.frames[-1]] += sample.count
    names = [stage.name for stage in stages] + [OTHER]
    return Breakdown(
        callbacks=callbacks,
        threads=tuple(cpu),
        main_tid=main_tid,
        main_samples=sum(by_stage.values()),
        stages=tuple((name, by_stage[name]) for name in names),
        top_self=tuple(by_self.most_common(top)),
    )

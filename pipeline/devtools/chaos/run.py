"""`ardary-pipeline bench chaos`: the whole stack under load and faults, then the reconciliation.

1. Start the stack (`chaos.stack`): three brokers, simulator, ingress, two workers, sink.
2. Run the load (`chaos.loadgen`) for `seconds`, carrying out the seeded fault schedule
   (`chaos.schedule`, `chaos.faults`) on the main thread, restarting any child that dies on its
   own (`chaos.services`), sampling what an operator sees on a side thread. A step that blocks
   (a broker start waits until the cluster lists every broker) delays the steps after it by as
   much, and the load by as much: each fault keeps its length and its place among the others,
   and every fault happens under load. A fault ends `hold` seconds after it really began.
3. Wait until the stack is quiet (`chaos.quiesce`), with a deadline.
4. Stop the sink, read every ledger (`chaos.ledgers`), compute the figures
   (`chaos.reconcile`), write `chaos-report.json` in the run directory and print them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.devtools.chaos.faults import FaultRunner
from pipeline.devtools.chaos.ledgers import gather_evidence
from pipeline.devtools.chaos.loadgen import LoadGenerator, LoadPlan
from pipeline.devtools.chaos.quiesce import observe, wait_quiet
from pipeline.devtools.chaos.reconcile import reconcile
from pipeline.devtools.chaos.report import ChaosReport
from pipeline.devtools.chaos.schedule import Timetable, plan_faults, steps_of
from pipeline.devtools.chaos.stack import ChaosOptions, ChaosStack, chaos_stack
from pipeline.serde import make_codec

__all__ = ["ChaosConfig", "run_chaos"]

_OBSERVE_EVERY_S = 2.0
# the run's own Kafka clients (load generator, probes, readers) log every refused connection
# while the cluster is down; what they could not do is in their ledgers and the report
_CLIENT_LOGGERS = ("aiokafka", "kafka")


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """One run: its length, its seed, the load, how long quiet may take, where it writes."""

    seconds: float
    seed: int
    run_dir: Path
    requests_per_second: float = 20.0
    callbacks_per_second: float = 20.0
    quiet_deadline_s: float = 300.0


class _Observer:
    """Samples `observe()` on its own thread: a slow probe must not delay a fault."""

    def __init__(self, stack: ChaosStack, t0: float) -> None:
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(stack, t0), daemon=True)

    def _loop(self, stack: ChaosStack, t0: float) -> None:
        while not self._stop.wait(_OBSERVE_EVERY_S):
            self.samples.append(observe(stack, t0))

    def __enter__(self) -> _Observer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@contextlib.contextmanager
def _quiet_client_logs() -> Any:
    saved = {name: logging.getLogger(name).level for name in _CLIENT_LOGGERS}
    for name in _CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def _drive(
    stack: ChaosStack,
    config: ChaosConfig,
    t0: float,
    echo: Callable[[str], Any],
) -> tuple[FaultRunner, float]:
    """Carry out every step when due, until every fault is over and the load has lasted its
    planned length plus the delay; returns the runner and that delay."""
    runner = FaultRunner(stack, t0)
    table = Timetable(steps_of(plan_faults(config.seconds, config.seed)))
    while table.pending or time.monotonic() - t0 < config.seconds + table.delay:
        step = table.next_due(time.monotonic() - t0)
        if step is not None:
            entry = runner.run(step)
            table.done(step, entry.at, entry.took)
            echo(
                f"  t={entry.at:6.1f}s {entry.fault} {entry.phase}: {entry.target} — "
                f"{entry.note} ({entry.took:.1f}s)"
            )
            continue
        stack.services.supervise()
        time.sleep(0.1)
    return runner, table.delay


def run_chaos(config: ChaosConfig, echo: Callable[[str], Any] = print) -> ChaosReport:
    """One chaos run (see the module docstring); the report is written and printed."""
    options = ChaosOptions(seed=config.seed)
    codec = make_codec(None)
    started_at = datetime.now(UTC)
    with _quiet_client_logs(), chaos_stack(config.run_dir, options) as stack:
        echo(
            f"stack up in {(datetime.now(UTC) - started_at).total_seconds():.0f}s; {config.run_dir}"
        )
        plan = LoadPlan(
            config.requests_per_second, config.callbacks_per_second, config.seconds, config.seed
        )
        load = LoadGenerator(
            stack.client,
            stack.prefix,
            codec,
            stack.callback_url,
            plan,
            config.run_dir / "load.jsonl",
        )
        t0 = time.monotonic()
        load.start()
        with _Observer(stack, t0) as observer:
            runner, delay = _drive(stack, config, t0, echo)
            load.stop()
            load_seconds = time.monotonic() - t0
            echo(
                f"load done after {load_seconds:.0f}s (faults ran {delay:.0f}s late): "
                f"{dict(load.counts)}; waiting for quiet"
            )
            quiet = wait_quiet(stack, config.quiet_deadline_s, stack.services.supervise)
        sink = stack.services["sink"]
        sink.stop()
        evidence = gather_evidence(
            client=stack.client,
            prefix=stack.prefix,
            codec=codec,
            generator_log=config.run_dir / "load.jsonl",
            simulator_url=stack.simulator_url,
            warehouse=stack.warehouse,
        )
        exits = [
            {"name": e.name, "at": round(e.at - t0, 1), "code": e.code, "tail": e.tail}
            for e in stack.services.exits
        ]
    report = ChaosReport(
        seed=config.seed,
        seconds=config.seconds,
        run_dir=config.run_dir,
        header={
            "started_at": started_at.isoformat(),
            "options": asdict(options),
            "load": {
                **asdict(plan),
                "actual_seconds": round(load_seconds, 1),
                "schedule_delay_s": round(delay, 1),
                "upstream_producers": load.producers,
                "counts": dict(load.counts),
            },
            "faults": [asdict(f) for f in plan_faults(config.seconds, config.seed)],
        },
        timeline=[e.as_json() for e in runner.timeline],
        exits=exits,
        quiet=quiet,
        observations=observer.samples,
        figures=reconcile(evidence),
    )
    report.write()
    report.print(echo)
    return report

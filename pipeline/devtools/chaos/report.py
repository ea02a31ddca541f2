"""The chaos run's report: the JSON file in the run directory, and the printed figures ending
with one `RATIO name=value` line per figure (the benchmarks' convention)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.devtools.chaos.quiesce import Quiet
from pipeline.devtools.chaos.reconcile import Figures

__all__ = ["RATIOS", "ChaosReport"]

RATIOS = (
    "callbacks_lost",
    "warehouse_duplicates",
    "requests_without_one_result",
    "duplicate_sends",
    "lifecycle_mismatch",
    "answers_5xx",
)


@dataclass(frozen=True)
class ChaosReport:
    """Everything one run found; `passed` when quiet was reached and every count is 0.

    A process that exits on its own (and is restarted, as a supervisor would) is listed, not
    failed: what matters is what it cost, which the figures say.
    """

    seed: int
    seconds: float
    run_dir: Path
    header: dict[str, Any]
    timeline: list[dict[str, Any]]
    exits: list[dict[str, Any]]
    quiet: Quiet
    observations: list[dict[str, Any]]
    figures: Figures

    @property
    def passed(self) -> bool:
        return self.quiet.reached and self.figures.clean

    @property
    def path(self) -> Path:
        return self.run_dir / "chaos-report.json"

    def write(self) -> Path:
        doc = {
            **self.header,
            "seed": self.seed,
            "seconds": self.seconds,
            "passed": self.passed,
            "timeline": self.timeline,
            "unexpected_exits": self.exits,
            "quiescence": {
                "reached": self.quiet.reached,
                "seconds": round(self.quiet.seconds, 1),
                "last": self.quiet.last,
            },
            "figures": self.figures.as_json(),
            "observations": self.observations,
        }
        self.path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
        return self.path

    def print(self, echo: Callable[[str], Any]) -> None:
        f = self.figures
        echo(f"chaos run seed {self.seed}, {self.seconds:g}s of load — report: {self.path}")
        for entry in self.timeline:
            echo(
                f"  t={entry['at']:7.1f}s (planned {entry['planned_at']:6.1f}) "
                f"{entry['fault']:<21} {entry['phase']:<5} {entry['target']:<9} {entry['note']}"
            )
        for ex in self.exits:
            echo(f"  unexpected exit: {ex['name']} at t={ex['at']:.1f}s code {ex['code']}")
        state = "reached" if self.quiet.reached else "NOT reached"
        echo(f"quiescence {state} after {self.quiet.seconds:.0f}s: {self.quiet.last}")
        echo(
            f"requests {f.requests} (lost {f.requests_lost}); lifecycles DELIVERED {f.delivered}; "
            f"UNKNOWN_AFTER_CRASH {f.unknown_after_crash} "
            f"({f.unknown_after_crash_at_ardary} of them reached Ardary; not duplicates)"
        )
        echo(
            f"callbacks answered 2xx {f.callbacks_sent} (spooled {f.callbacks_spooled}), "
            f"4xx {f.answers_4xx}, 5xx {f.answers_5xx}; no answer {f.callbacks_unanswered} "
            f"({f.unanswered_in_warehouse} in the warehouse anyway); "
            f"connection refused {f.callbacks_refused}; warehouse rows no sender logged "
            f"{f.warehouse_unexplained}"
        )
        holds = "holds" if f.identity_holds else "BROKEN — THIS RUN IS VOID"
        echo(
            f"identity: sent {f.callbacks_sent} == in_warehouse {f.callbacks_in_warehouse} "
            f"+ missing {f.callbacks_missing}: {holds}"
        )
        echo(f"warehouse lifecycles differing from sms.lifecycle: {f.warehouse_lifecycle_mismatch}")
        for name, ids in f.samples.items():
            if ids:
                echo(f"  {name} e.g. {ids[:5]}")
        echo(f"verdict: {'PASS' if self.passed else 'FAIL'}")
        for name in RATIOS:
            echo(f"RATIO {name}={getattr(f, name)}")

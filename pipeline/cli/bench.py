"""`ardary-pipeline bench NAME`: benchmarks that print figures and a last line `RATIO name=value`.

Each benchmark measures a bare baseline in the same run (hello-world server, bare producer,
bare consume loop), so the ratio says what our code costs, whatever the machine.
"""

from __future__ import annotations

import click

from pipeline.cli import LazyGroup

__all__ = ["BENCHMARKS", "bench"]

BENCHMARKS: dict[str, tuple[str, str]] = {
    "ingress": (
        "pipeline.devtools.bench.ingress:bench_ingress_command",
        "Callbacks/s over real HTTP.",
    ),
    "outbound": (
        "pipeline.devtools.bench.outbound:bench_outbound_command",
        "Rate accuracy, msg/s.",
    ),
    "correlate": (
        "pipeline.devtools.bench.correlate:bench_correlate_command",
        "Events/s, latency.",
    ),
    "sink": ("pipeline.devtools.bench.sink:bench_sink_command", "Rows/s into DuckDB/PostgreSQL."),
}


@click.group(cls=LazyGroup, lazy=BENCHMARKS)
def bench() -> None:
    """Run a benchmark (ingress, outbound, correlate, sink) against the real broker."""

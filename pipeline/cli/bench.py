"""`ardary-pipeline bench NAME`: benchmarks that print figures and a last line `RATIO name=value`.

Each benchmark measures a bare baseline in the same run (hello-world server, bare producer,
bare consume loop), so the ratio says what our code costs, whatever the machine. The work is
done by the run functions of `pipeline.devtools.bench`; this module only reads the flags, and
imports a benchmark's module when that benchmark runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

__all__ = ["bench"]


class _Listed(click.Group):
    """A group that lists its benchmarks in the order they are declared, not sorted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Listed)
def bench() -> None:
    """Run a benchmark (ingress, outbound, correlate, sink, chaos) against the real broker."""


@bench.command("ingress", short_help="Callbacks/s over real HTTP.")
@click.option("--seconds", type=click.FloatRange(2, 600), default=10, show_default=True)
@click.option("--connections", type=click.IntRange(1, 10_000), default=64, show_default=True)
@click.option("--wrk-threads", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--paths", "path_count", type=click.IntRange(10, 10**6), default=5000,
              show_default=True, help="Distinct pre-generated callback URLs.")  # fmt: skip
@click.option("--rate", type=click.IntRange(10, 100_000), default=1000, show_default=True,
              help="Fixed rate (callbacks/s) of the open-loop latency run.")  # fmt: skip
@click.option("--producer-records", type=click.IntRange(1000, 10**7), default=200_000,
              show_default=True)  # fmt: skip
@click.option("--server", type=click.Choice(["granian", "uvicorn"]), default="granian",
              show_default=True, help="HTTP server of the ingress and hello runs.")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 8), default=2, show_default=True,
              help="granian runtime threads.")  # fmt: skip
def ingress(
    seconds: float,
    connections: int,
    wrk_threads: int,
    path_count: int,
    rate: int,
    producer_records: int,
    server: str,
    threads: int,
) -> None:
    """Callbacks/s over real HTTP into Kafka, vs a hello server and a bare producer."""
    from pipeline.devtools.bench.ingress import run_ingress_bench

    run_ingress_bench(
        seconds=seconds,
        connections=connections,
        wrk_threads=wrk_threads,
        path_count=path_count,
        rate=rate,
        producer_records=producer_records,
        server=server,
        threads=threads,
        echo=click.echo,
    )


@bench.command("outbound", short_help="Rate accuracy, msg/s.")
@click.option("--seconds", default=60.0, show_default=True, type=float, help="Measured time.")
@click.option("--rate", default=200.0, show_default=True, type=float, help="Target msg/s.")
@click.option(
    "--messages",
    default=30_000,
    show_default=True,
    type=int,
    help="Messages of each unlimited-throughput run.",
)
def outbound(seconds: float, rate: float, messages: int) -> None:
    """Rate accuracy and peak at --rate with 1 and 2 workers, then unlimited throughput."""
    from pipeline.devtools.bench.outbound import run_outbound_bench

    run_outbound_bench(seconds=seconds, rate=rate, messages=messages, echo=click.echo)


@bench.command("correlate", short_help="Events/s, latency.")
@click.option("--events", "n_events", default=200_000, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--live", default=1_000_000, show_default=True, help="Lifecycles for RSS (0: skip).")
@click.option("--rate", default=500.0, show_default=True, help="Callbacks/s for the latency run.")
@click.option("--seconds", default=10.0, show_default=True, help="Latency run length.")
@click.option("--store", default="rocksdb://", show_default=True)
def correlate(
    n_events: int, partitions: int, live: int, rate: float, seconds: float, store: str
) -> None:
    """Throughput of one correlate worker vs a bare aiokafka loop; latency p99; RSS."""
    from pipeline.devtools.bench.correlate import run_correlate_bench

    run_correlate_bench(
        n_events=n_events,
        partitions=partitions,
        live=live,
        rate=rate,
        seconds=seconds,
        store=store,
        echo=click.echo,
    )


@bench.command("sink", short_help="Rows/s into DuckDB/PostgreSQL.")
@click.option("-n", "--records", "n", default=200_000, show_default=True, type=int)
@click.option("--pg-dsn", default=None, help="PostgreSQL DSN (default: a temporary server).")
def sink(n: int, pg_dsn: str | None) -> None:
    """Lifecycle rows/s into DuckDB and PostgreSQL, against the bare consume loop."""
    from pipeline.devtools.bench.broker import bench_broker
    from pipeline.devtools.bench.sink import bench_postgres, run_sink_bench

    def warn(line: str) -> None:
        click.echo(line, err=True)

    with bench_broker() as bootstrap, bench_postgres(pg_dsn, warn=warn) as dsn:
        run_sink_bench(bootstrap, n=n, pg_dsn=dsn, echo=click.echo)


@bench.command("chaos", short_help="The whole stack under faults: losses, duplicates.")
@click.option("--seconds", type=click.FloatRange(30, 3600), default=180, show_default=True,
              help="Length of the load; the faults happen inside it.")  # fmt: skip
@click.option("--seed", type=int, default=1, show_default=True,
              help="Seeds the fault schedule, the load and the simulator.")  # fmt: skip
@click.option("--rate", type=click.FloatRange(1, 1000), default=20, show_default=True,
              help="Send requests/s, and as many independent callbacks/s.")  # fmt: skip
@click.option("--runs-dir", default=Path(".runs"), show_default=True,
              type=click.Path(path_type=Path))  # fmt: skip
@click.pass_context
def chaos(ctx: click.Context, seconds: float, seed: int, rate: float, runs_dir: Path) -> None:
    """Three brokers, ingress, two workers, sink and simulator under load while brokers,
    workers, the sink and the ingress are killed, paused and stopped on a seeded schedule;
    then every figure from ledgers the pipeline does not keep. Exit 1 unless all are 0."""
    from pipeline.cli.paths import state_dir
    from pipeline.devtools.chaos.run import ChaosConfig, run_chaos

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run_dir = state_dir(runs_dir, "--runs-dir") / f"chaos-{stamp}-seed{seed}"
    config = ChaosConfig(
        seconds=seconds,
        seed=seed,
        run_dir=run_dir,
        requests_per_second=rate,
        callbacks_per_second=rate,
    )
    report = run_chaos(config, echo=click.echo)
    if not report.passed:
        ctx.exit(1)

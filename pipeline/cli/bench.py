"""`ardary-pipeline bench NAME`: benchmarks that print figures and a last line `RATIO name=value`.

Each benchmark measures a bare baseline in the same run (hello-world server, bare producer,
bare consume loop), so the ratio says what our code costs, whatever the machine. The work is
done by the run functions of `pipeline.devtools.bench`; this module only reads the flags, and
imports a benchmark's module when that benchmark runs.

Every benchmark runs on the cluster of KAFKA_BOOTSTRAP_SERVERS (with the other KAFKA_* security
settings), else on a local cluster it starts: `--nodes 3 --security sasl_ssl` makes that a
three-broker SASL_SSL one, so plaintext and secured figures come from the same command.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from pipeline.cli.paths import state_dir

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security

__all__ = ["bench"]

F = TypeVar("F", bound=Callable[..., None])


def _cluster_options(command: F) -> F:
    """`--nodes` and `--security`: the local cluster the benchmark starts."""
    command = click.option(
        "--security",
        type=click.Choice(["plaintext", "sasl_ssl"]),
        default=None,
        help="Local cluster's listeners: sasl_ssl = TLS with a generated CA and SCRAM-SHA-512 "
        "[default: plaintext]. Not with KAFKA_BOOTSTRAP_SERVERS.",
    )(command)
    return click.option(
        "--nodes",
        type=click.Choice(["1", "3"]),
        default=None,
        help="Start a local cluster of this many nodes (3: replication factor 3, "
        "min.insync.replicas=2) [default: 1]. Not with KAFKA_BOOTSTRAP_SERVERS.",
    )(command)


def _nodes(value: str | None) -> int | None:
    return int(value) if value else None


def _security(value: str | None) -> Security | None:
    if value is None:
        return None
    return "sasl_ssl" if value == "sasl_ssl" else "plaintext"


class _Listed(click.Group):
    """A group that lists its benchmarks in the order they are declared, not sorted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=_Listed)
def bench() -> None:
    """Run a benchmark (ingress, outbound, correlate, sink, e2e, chaos, fuzz) on the real broker."""


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
@click.option("--profile", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also profile the ingress (py-spy) in a second loaded run: raw stacks into "
              "this directory, CPU µs per callback by thread and by stage printed.")  # fmt: skip
@_cluster_options
@click.pass_context
def ingress(
    ctx: click.Context,
    seconds: float,
    connections: int,
    wrk_threads: int,
    path_count: int,
    rate: int,
    producer_records: int,
    server: str,
    threads: int,
    profile: Path | None,
    nodes: str | None,
    security: str | None,
) -> None:
    """Callbacks/s over real HTTP into Kafka, vs a hello server and a bare producer."""
    from pipeline.devtools.bench.ingress import find_py_spy, run_ingress_bench

    py_spy = None
    if profile is not None:
        state_dir(profile, "--profile")  # now, not after the measured runs
        py_spy = find_py_spy()
        if py_spy is None:
            click.echo(
                "bench ingress: --profile needs py-spy, found neither beside this Python nor "
                "on PATH (pip install py-spy, or the `bench` extra)",
                err=True,
            )
            ctx.exit(2)
    run_ingress_bench(
        seconds=seconds,
        connections=connections,
        wrk_threads=wrk_threads,
        path_count=path_count,
        rate=rate,
        producer_records=producer_records,
        server=server,
        threads=threads,
        nodes=_nodes(nodes),
        security=_security(security),
        profile=profile,
        py_spy=py_spy,
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
@click.option("--paced-rate", default=200.0, show_default=True, type=float,
              help="Target msg/s of the paced run.")  # fmt: skip
@click.option("--paced-latency-ms", default=300.0, show_default=True, type=float,
              help="The simulator's answer time in the paced run.")  # fmt: skip
@click.option("--login-rates", default="20,80", show_default=True,
              help="The two logins' msg/s in the per-login run.")  # fmt: skip
@click.option("--runs", default=",".join(("rate", "unlimited", "paced", "login")),
              show_default=True, help="Which runs, comma-separated.")  # fmt: skip
@_cluster_options
def outbound(
    seconds: float,
    rate: float,
    messages: int,
    paced_rate: float,
    paced_latency_ms: float,
    login_rates: str,
    runs: str,
    nodes: str | None,
    security: str | None,
) -> None:
    """Rate accuracy and peak at --rate, unlimited throughput, a paced run (messages per call
    with a slow Ardary) and a per-login run (two logins at their own rates), each with 1 and 2
    workers."""
    from pipeline.devtools.bench.outbound import RUNS, run_outbound_bench

    chosen = tuple(r.strip() for r in runs.split(",") if r.strip())
    unknown = sorted(set(chosen) - set(RUNS))
    if unknown or not chosen:
        raise click.BadParameter(f"choose among {', '.join(RUNS)}", param_hint="--runs")
    try:
        first, second = (float(r) for r in login_rates.split(","))
    except ValueError:
        raise click.BadParameter("two msg/s, e.g. 20,80", param_hint="--login-rates") from None
    if min(first, second) <= 0:
        raise click.BadParameter("rates must be above 0", param_hint="--login-rates")
    run_outbound_bench(
        seconds=seconds,
        rate=rate,
        messages=messages,
        paced_rate=paced_rate,
        paced_latency_ms=paced_latency_ms,
        login_rates=(first, second),
        runs=chosen,
        nodes=_nodes(nodes),
        security=_security(security),
        echo=click.echo,
    )


@bench.command("correlate", short_help="Events/s, latency.")
@click.option("--events", "n_events", type=click.IntRange(1, 10**8), default=200_000,
              show_default=True)  # fmt: skip
@click.option("--partitions", type=click.IntRange(1, 1000), default=6, show_default=True)
@click.option("--live", type=click.IntRange(0, 10**8), default=1_000_000, show_default=True,
              help="Lifecycles for RSS (0: skip).")  # fmt: skip
@click.option("--rate", type=click.FloatRange(1, 100_000), default=500.0, show_default=True,
              help="Callbacks/s for the latency run.")  # fmt: skip
@click.option("--seconds", type=click.FloatRange(1, 3600), default=10.0, show_default=True,
              help="Latency run length.")  # fmt: skip
@click.option("--store", type=click.Choice(["rocksdb://", "memory://"]), default="rocksdb://",
              show_default=True)  # fmt: skip
@_cluster_options
@click.option("--recovery/--no-recovery", "with_recovery", default=True, show_default=True,
              help="After the RSS run: SIGKILL the worker, time its restart on the same data "
              "dir, then on an empty one (needs --live).")  # fmt: skip
def correlate(
    n_events: int,
    partitions: int,
    live: int,
    rate: float,
    seconds: float,
    store: str,
    nodes: str | None,
    security: str | None,
    with_recovery: bool,
) -> None:
    """Throughput of one correlate worker vs a bare aiokafka loop; latency p99; RSS; recovery."""
    from pipeline.devtools.bench.correlate import run_correlate_bench

    run_correlate_bench(
        n_events=n_events,
        partitions=partitions,
        live=live,
        rate=rate,
        seconds=seconds,
        store=store,
        nodes=_nodes(nodes),
        security=_security(security),
        with_recovery=with_recovery,
        echo=click.echo,
    )


@bench.command("sink", short_help="Rows/s into DuckDB/PostgreSQL.")
@click.option("-n", "--records", "n", default=200_000, show_default=True, type=int)
@click.option("--pg-dsn", default=None, help="PostgreSQL DSN (default: a temporary server).")
@_cluster_options
def sink(n: int, pg_dsn: str | None, nodes: str | None, security: str | None) -> None:
    """Lifecycle rows/s into DuckDB and PostgreSQL, against the bare consume loop."""
    from pipeline.devtools.bench.broker import bench_broker
    from pipeline.devtools.bench.sink import bench_postgres, run_sink_bench

    def warn(line: str) -> None:
        click.echo(line, err=True)

    with (
        bench_broker(_nodes(nodes), _security(security)) as cluster,
        bench_postgres(pg_dsn, warn=warn) as dsn,
    ):
        run_sink_bench(cluster, n=n, pg_dsn=dsn, echo=click.echo)


@bench.command("e2e", short_help="Msgs/s end to end vs the slowest stage.")
@click.option("--requests", "n_requests", type=click.IntRange(10, 10**7), default=4000,
              show_default=True, help="Send requests through the whole pipeline (~20/s on a "
              "loaded 2-core box: the default takes ~6 minutes in all).")  # fmt: skip
@click.option("--ingress-seconds", type=click.FloatRange(2, 600), default=10, show_default=True,
              help="Length of the ingress's run alone (wrk).")  # fmt: skip
@_cluster_options
def e2e(n_requests: int, ingress_seconds: float, nodes: str | None, security: str | None) -> None:
    """The outbound worker, the ingress, the correlate worker and the sink each alone (in
    messages/s), then N send requests through the whole pipeline (simulator, ingress, worker,
    DuckDB sink) until the warehouse has them all DELIVERED; the ratio of the two."""
    from pipeline.devtools.bench.e2e import run_e2e_bench

    run_e2e_bench(
        requests=n_requests,
        ingress_seconds=ingress_seconds,
        nodes=_nodes(nodes),
        security=_security(security),
        echo=click.echo,
    )


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


@bench.command("fuzz", short_help="Hostile callbacks: 5xx, dead letters, RSS.")
@click.option("--count", type=click.IntRange(100, 10**7), default=100_000, show_default=True)
@click.option("--checkpoint", type=click.IntRange(10, 10**6), default=10_000, show_default=True,
              help="RSS is taken after this many requests and at the end.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--corpus", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Requests file: read when it exists, else generated into it.")  # fmt: skip
@click.option("--generate-only", is_flag=True,
              help="Write --corpus and stop (no broker): generation is the slow part.")  # fmt: skip
def fuzz(count: int, checkpoint: int, seed: int, corpus: Path | None, generate_only: bool) -> None:
    """Hypothesis-generated hostile callbacks against the shipped ingress (broker up)."""
    from pipeline.devtools.bench.fuzz import generate_corpus, run_fuzz

    if corpus is not None and not corpus.exists():
        state_dir(corpus.parent, "--corpus")  # before generating: generation is the slow part
    if generate_only:
        if corpus is None:
            raise click.UsageError("--generate-only needs --corpus")
        generate_corpus(count, seed, corpus)
        click.echo(f"{count:,} requests written to {corpus}")
        return
    run_fuzz(count=count, checkpoint=checkpoint, seed=seed, corpus=corpus, echo=click.echo)

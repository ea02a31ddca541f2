"""`ardary-pipeline worker`: a Faust worker running the chosen agents."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.agents.app import AGENTS, create_app
from pipeline.cli.connect import connect
from pipeline.cli.paths import state_dir
from pipeline.errors import ConfigError
from pipeline.kafka.worker import PipelineWorker
from pipeline.settings import load_settings
from pipeline.tracing import start_tracing

__all__ = ["worker"]


@click.command()
@click.option(
    "--agents",
    default=None,
    help="Comma-separated agents to run (default: all: " + ",".join(sorted(AGENTS)) + ").",
)
@click.option(
    "--web-port",
    default=6066,
    show_default=True,
    type=int,
    help="Port of the worker's web server (/healthz, /readyz, /metrics, dashboard).",
)
@click.option("--web-host", default="127.0.0.1", show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data/faust"),
    show_default=True,
    help="Table state (RocksDB); one directory per worker instance (created if missing).",
)
@click.option(
    "--store",
    default="rocksdb://",
    show_default=True,
    help="Table store: rocksdb:// (production) or memory://.",
)
@click.option(
    "--loglevel",
    default="warn",
    show_default=True,
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
)
def worker(
    agents: str | None, web_port: int, web_host: str, data_dir: Path, store: str, loglevel: str
) -> None:
    """Run the Faust agents (outbound, correlate, metrics, optouts) until SIGTERM/Ctrl-C."""
    settings = load_settings()
    names = [a.strip() for a in agents.split(",") if a.strip()] if agents else sorted(AGENTS)
    unknown = sorted(set(names) - set(AGENTS))
    if unknown:
        known = ", ".join(sorted(AGENTS))
        raise ConfigError(f"--agents: unknown agent {unknown[0]!r} (known: {known})")
    state_dir(data_dir, "--data-dir")  # faust creates the last level only, without parents
    cluster = connect(settings)  # local checks first, then the cluster
    start_tracing("ardary-worker")  # only if the OTEL_* variables ask for it
    app, _streams = create_app(
        settings,
        data_dir=data_dir,
        web_port=web_port,
        web_host=web_host,
        store=store,
        agents=names,
        replication=cluster.replication,
    )
    PipelineWorker(app, loglevel=loglevel, quiet=True).execute_from_commandline()

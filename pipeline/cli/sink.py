"""`ardary-pipeline sink`: run the warehouse sink consumer until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import threading

import click

from pipeline.cli.connect import connect
from pipeline.cli.paths import warehouse_dir
from pipeline.logs import configure_logging
from pipeline.settings import load_settings
from pipeline.sinks.runner import DEFAULT_GROUP, run_sink

__all__ = ["sink"]


@click.command()
@click.option("--url", "url", default=None, help="Warehouse URL (default: WAREHOUSE_URL).")
@click.option("--group", default=DEFAULT_GROUP, show_default=True, help="Consumer group.")
@click.option(
    "--from-beginning",
    is_flag=True,
    help="Ignore the stored offsets once and re-read every topic (keyed tables: no duplicates).",
)
@click.option(
    "--max-idle",
    type=float,
    default=None,
    help="Exit after this many seconds without new records once assigned (batch jobs, tests).",
)
def sink(url: str | None, group: str, from_beginning: bool, max_idle: float | None) -> None:
    """Consume the pipeline's topics into the warehouse, exactly once."""
    overrides = {"warehouse_url": url} if url else {}
    settings = load_settings(**overrides)
    warehouse_dir(settings.warehouse_url, "--url" if url else "WAREHOUSE_URL")
    connect(settings)
    configure_logging()
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()  # the loop flushes what it holds, then exits

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stats = run_sink(
        settings,
        stop_event=stop,
        max_idle_s=max_idle,
        group=group,
        from_beginning=from_beginning,
    )
    click.echo(f"sink: {stats.records} records, {stats.rows} rows written")

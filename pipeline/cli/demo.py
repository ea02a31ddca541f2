"""`ardary-pipeline demo` and `ardary-pipeline dev`: the whole pipeline on one machine."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.cli.paths import state_dir
from pipeline.settings import load_settings

__all__ = ["demo", "dev"]


def _run_dir(base: Path) -> Path:
    return state_dir(base, "--runs-dir") / datetime.now(UTC).strftime("run-%Y%m%dT%H%M%S")


@click.command()
@click.option(
    "--messages",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="How many send requests to push through.",
)
@click.option(
    "--dialect",
    default="v2",
    show_default=True,
    type=click.Choice(["v1", "v2"]),
    help="Which of Ardary's two callback dialects the simulator speaks.",
)
@click.option(
    "--runs-dir",
    default=Path(".runs"),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where each run keeps its logs and data.",
)
def demo(messages: int, dialect: str, runs_dir: Path) -> None:
    """The whole pipeline on this machine, with nothing configured.

    Starts a local Kafka broker (or uses KAFKA_BOOTSTRAP_SERVERS), creates the topics, starts
    the Ardary simulator, the ingress, a worker and the DuckDB sink, publishes N send requests,
    shows their progress, and prints a summary read from the warehouse. Exits 0 when every
    message reached a final state; stops every process it started, also on Ctrl-C.
    """
    from rich.console import Console

    from pipeline.devtools.stack.demo import run_demo

    run_demo(
        load_settings(),
        messages=messages,
        dialect=dialect,
        run_dir=_run_dir(runs_dir),
        console=Console(),
    )


@click.command()
@click.option("--dialect", default="v2", show_default=True, type=click.Choice(["v1", "v2"]))
@click.option(
    "--trickle",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0, 1000),
    help="Send requests per second published continuously (0: none).",
)
@click.option(
    "--runs-dir", default=Path(".runs"), show_default=True, type=click.Path(path_type=Path)
)
def dev(dialect: str, trickle: float, runs_dir: Path) -> None:
    """The demo's stack, kept running until Ctrl-C, with a trickle of traffic."""
    from pipeline.devtools.stack.dev import run_dev

    run_dev(load_settings(), dialect=dialect, trickle=trickle, run_dir=_run_dir(runs_dir))

"""The `ardary-pipeline` command: one sub-command per process of the pipeline.

Each command group is one module of this package, imported only when it is invoked, so
`ardary-pipeline --help` is instant and `ingress` never imports Faust. Expected failures
(`PipelineError`) print one line and exit with its code (2 for usage/configuration), never
a traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from pipeline import __version__
from pipeline.errors import PipelineError

__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]

# name -> ("module:attribute" of a click.Command, one-line help). Add a line to add a command.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("pipeline.cli.demo:demo", "The whole pipeline on this machine, then a summary."),
    "dev": ("pipeline.cli.demo:dev", "The same stack as demo, kept running until Ctrl-C."),
    "broker": (
        "pipeline.cli.broker:broker",
        "A local Apache Kafka (KRaft): 1 or 3 nodes, plaintext or SASL_SSL.",
    ),
    "topics": ("pipeline.cli.topics:topics", "Create or list the pipeline's topics."),
    "ingress": ("pipeline.cli.ingress:ingress", "The callback ingress (HTTP -> Kafka)."),
    "worker": ("pipeline.cli.worker:worker", "A Faust worker running the agents."),
    "sink": ("pipeline.cli.sink:sink", "The warehouse sink (Kafka -> DuckDB/PostgreSQL/Parquet)."),
    "publish": ("pipeline.cli.publish:publish", "Publish send requests (JSONL file or one)."),
    "simulator": ("pipeline.cli.simulator:simulator", "The Ardary API simulator."),
    "dead-letters": (
        "pipeline.cli.dead_letters:dead_letters",
        "Inspect or re-drive the dead-letter topic.",
    ),
    "bench": ("pipeline.cli.bench:bench", "Benchmarks printing `RATIO name=value`."),
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when it is run.

    `--help` shows the one-line help from the table, so it imports nothing heavy.
    """

    lazy = COMMANDS

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return None
        module_name, _, attr = entry[0].partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short) for name, (_, short) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ardary-pipeline")
def cli() -> None:
    """Ardary SMS callbacks, sends, correlation, metrics and warehouse, as Kafka streams.

    Configuration comes from the environment (and a .env file); see the README.
    """


def main(argv: list[str] | None = None) -> None:
    """Run the command line; map expected errors to one line and an exit code."""
    try:
        rv: Any = cli.main(args=argv, prog_name="ardary-pipeline", standalone_mode=False)
    except PipelineError as exc:
        click.echo(f"ardary-pipeline: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)

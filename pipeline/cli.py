"""The `ardary-pipeline` command: one sub-command per process of the pipeline.

Sub-commands live next to the code they run and are imported only when invoked, so
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

__all__ = ["COMMANDS", "cli", "main"]

# name -> "module:attribute" of a click.Command. Add a line here to add a sub-command.
COMMANDS: dict[str, str] = {
    "broker": "pipeline.localkafka_cli:broker",
    "topics": "pipeline.topics_cli:topics",
    "ingress": "pipeline.ingress.cli:ingress",
    "simulator": "pipeline.simulator.cli:simulator",
    "sink": "pipeline.sinks.cli:sink",
    "publish": "pipeline.publish_cli:publish",
    "worker": "pipeline.agents.cli:worker",
}


class LazyGroup(click.Group):
    """A click group that imports a sub-command's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


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

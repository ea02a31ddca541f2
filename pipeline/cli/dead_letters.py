"""`ardary-pipeline dead-letters list|replay`: inspect the dead-letter topic and re-drive it."""

from __future__ import annotations

import click

from pipeline.cli.connect import connect
from pipeline.ingress.dead_letters import (
    DeadLetterReader,
    dead_letter_settings,
    replay_dead_letters,
)
from pipeline.serde import codec_for

__all__ = ["dead_letters"]


@click.group("dead-letters")
def dead_letters() -> None:
    """Inspect the dead-letter topic, or re-drive it through the (fixed) ingress parser."""


@dead_letters.command("list")
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
def list_command(limit: int) -> None:
    """Print one line per dead letter: offset, time, reason, size (never the raw content)."""
    settings = dead_letter_settings()
    connect(settings)
    codec = codec_for(settings)
    shown = 0
    reader = DeadLetterReader(settings, codec, group=None, from_beginning=True)
    for partition, offset, letter in reader:
        if letter is None:
            click.echo(f"{partition}:{offset}  (undecodable record)")
        else:
            click.echo(
                f"{partition}:{offset}  {letter.received_at.isoformat()}  {letter.reason:<22} "
                f"{letter.method} query={len(letter.raw)}B body={len(letter.body)}B  "
                f"{letter.detail}"
            )
        shown += 1
        if shown >= limit:
            break
    reader.close()
    click.echo(f"{shown} dead letter(s) shown")


@dead_letters.command("replay")
@click.option(
    "--from-beginning", is_flag=True, help="Re-drive every dead letter, not just new ones."
)
def replay_command(from_beginning: bool) -> None:
    """Re-parse dead letters and publish the callbacks that are now understood."""
    settings = dead_letter_settings()
    connect(settings)
    report = replay_dead_letters(settings, from_beginning=from_beginning)
    for offset, reason, detail in report.still_failing:
        click.echo(f"offset {offset}: still failing: {reason}: {detail}")
    click.echo(
        f"{report.dead_letters} dead letter(s) read, {report.replayed} re-driven "
        f"({report.republished} callback record(s) published), "
        f"{len(report.still_failing)} still failing"
    )

"""`ardary-pipeline publish`: send requests from a JSON-lines file, or one from flags."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.cli.connect import connect
from pipeline.core.send_requests import parse_send_request
from pipeline.errors import ConfigError, InputError
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.records import SendRequest
from pipeline.serde import codec_for
from pipeline.settings import Settings, load_settings

__all__ = ["publish", "read_requests"]


def read_requests(
    path: Path, settings: Settings, *, login: str | None = None
) -> tuple[list[SendRequest], list[str]]:
    """Every valid request of the file, and `line N: reason` for each invalid line.

    The whole file is validated before anything is published, so a bad line never leaves
    half a file sent. Blank lines are skipped.
    """
    good: list[SendRequest] = []
    bad: list[str] = []
    now = datetime.now(UTC)
    default_login = login or settings.ardary_login
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                bad.append(f"line {number}: not JSON ({exc.msg})")
                continue
            try:
                good.append(
                    parse_send_request(
                        obj, now=now, default_login=default_login, tz=settings.timezone
                    )
                )
            except InputError as exc:
                bad.append(f"line {number}: {exc}")
    return good, bad


def _publisher(settings: Settings) -> SendRequestPublisher:
    return SendRequestPublisher(
        connect(settings).client,
        prefix=settings.pipeline_topic_prefix,
        login=settings.ardary_login,
        timezone=settings.ardary_timezone,
        codec=codec_for(settings),
    )


@click.command()
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--to", "to", default=None, help="Recipient (E.164) of a single message.")
@click.option("--message", default=None, help="Text of a single message.")
@click.option("--login", default=None, help="Ardary login (default: ARDARY_LOGIN).")
@click.option(
    "--marketing",
    is_flag=True,
    help="A marketing message: sent only inside its recipient's window (SENDING_WINDOWS), with "
    "Ardary's STOP mention (a file's lines say it with their own `marketing` field).",
)
@click.option("--skip-invalid", is_flag=True, help="Publish the valid lines, report the others.")
def publish(
    file: Path | None,
    to: str | None,
    message: str | None,
    login: str | None,
    marketing: bool,
    skip_invalid: bool,
) -> None:
    """Publish send requests from FILE.jsonl, or one with --to and --message."""
    settings = load_settings()
    if (file is None) == (to is None and message is None):
        raise click.UsageError("give FILE.jsonl, or --to and --message (not both)")
    if marketing and file is not None:
        raise click.UsageError("--marketing goes with --to/--message (a file's lines carry it)")
    if not (login or settings.ardary_login):
        raise ConfigError("ARDARY_LOGIN: not set (or pass --login)")
    if file is None:
        if not to or not message:
            raise click.UsageError("--to and --message go together")
        request = parse_send_request(
            {
                "phone_number": to,
                "message": message,
                "login": login or settings.ardary_login,
                "marketing": marketing,
            },
            now=datetime.now(UTC),
            tz=settings.timezone,
        )
        with _publisher(settings) as publisher:
            click.echo(publisher.publish(request))
        return
    good, bad = read_requests(file, settings, login=login)
    for line in bad:
        click.echo(line, err=True)
    if bad and not skip_invalid:
        raise InputError(f"{len(bad)} invalid line(s) in {file}; nothing published")
    _publish_all(settings, good)
    click.echo(f"published {len(good)} send request(s), skipped {len(bad)} invalid line(s)")


def _publish_all(settings: Settings, requests: list[SendRequest]) -> None:
    with (
        _publisher(settings) as publisher,
        click.progressbar(
            requests, label="publishing", file=click.get_text_stream("stderr")
        ) as bar,
    ):
        for request in bar:
            publisher.publish(request)

"""`ardary-pipeline broker`: run the local Apache Kafka broker in the foreground until Ctrl-C."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click

from pipeline.cli.paths import state_dir
from pipeline.devtools.localkafka import KAFKA_VERSION, LocalKafka
from pipeline.errors import BrokerError

__all__ = ["broker"]


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep topics and records here across restarts, created if missing (default: a "
    "temporary directory, deleted on exit).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of the PLAINTEXT listener on 127.0.0.1 (default: a free one, or the one the "
    "data directory used last time).",
)
def broker(data_dir: Path | None, port: int | None) -> None:
    """A local single-node Apache Kafka broker (KRaft) for development.

    Prints one line with the bootstrap address once the broker answers, then runs until
    SIGINT (Ctrl-C) or SIGTERM and stops the broker cleanly.
    """
    started = time.monotonic()
    if data_dir is not None:
        data_dir = state_dir(data_dir, "--data-dir")
    kafka = LocalKafka(data_dir=data_dir, port=port)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # SIGTERM takes the same clean path as Ctrl-C

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            bootstrap = kafka.start()  # Ctrl-C here aborts the start (exit code 130)
        except KeyboardInterrupt:
            _ignore_signals()
            raise
        click.echo(
            f"Kafka {KAFKA_VERSION} ready at {bootstrap} (data: {kafka.data_dir}) "
            f"in {time.monotonic() - started:.1f}s"
        )
        try:
            while kafka.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            _ignore_signals()  # a second Ctrl-C must not cut the clean shutdown short
            click.echo("Stopping Kafka...", err=True)
        else:
            raise BrokerError(
                f"the local Kafka broker exited unexpectedly; see {kafka.data_dir}/broker.log"
            )
    finally:
        kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Kafka stopped", err=True)


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)

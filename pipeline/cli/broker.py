"""`ardary-pipeline broker`: a local Apache Kafka (1 or 3 nodes) in the foreground until Ctrl-C."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from types import FrameType

import click

from pipeline.cli.paths import state_dir
from pipeline.devtools.localkafka import KAFKA_VERSION, LocalKafka
from pipeline.errors import BrokerError

__all__ = ["broker"]

log = logging.getLogger("pipeline.broker")

RESTART_DELAY_S = 5.0  # a dead node is started again after this long, like a pod restart
RESTARTS_PER_NODE = 5  # more deaths than this within RESTART_WINDOW_S: give up, stop all
RESTART_WINDOW_S = 600.0


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
    help="Port of the (first node's) client listener on 127.0.0.1 (default: a free one, or "
    "the one the data directory used last time).",
)
@click.option(
    "--nodes",
    type=click.Choice(["1", "3"]),
    default="1",
    show_default=True,
    help="One node, or a three-node cluster (replication factor 3, min.insync.replicas=2).",
)
@click.option(
    "--security",
    type=click.Choice(["plaintext", "sasl_ssl"]),
    default="plaintext",
    show_default=True,
    help="sasl_ssl: TLS with a generated test CA, SCRAM-SHA-256/512 user (PLAIN refused).",
)
def broker(data_dir: Path | None, port: int | None, nodes: str, security: str) -> None:
    """A local Apache Kafka (KRaft) for development: one node or three, plaintext or SASL_SSL.

    Prints the client settings once every node answers (and writes them, password included, as
    KEY=value lines to <data-dir>/client.env), then runs until SIGINT (Ctrl-C) or SIGTERM and
    stops the nodes cleanly. A node that dies is started again on its data dir after a few
    seconds while the others keep serving, as a cluster's pod would be.
    """
    started = time.monotonic()
    if data_dir is not None:
        data_dir = state_dir(data_dir, "--data-dir")
    kafka = LocalKafka(
        data_dir=data_dir,
        port=port,
        nodes=int(nodes),
        security="sasl_ssl" if security == "sasl_ssl" else "plaintext",
    )

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
        for key, value in kafka.client_settings().items():
            shown = "********** (in client.env)" if key == "KAFKA_SASL_PASSWORD" else value
            click.echo(f"  {key}={shown}")
        click.echo(f"client settings: {kafka.client_env_path}")
        try:
            _supervise(kafka)
        except KeyboardInterrupt:
            _ignore_signals()  # a second Ctrl-C must not cut the clean shutdown short
            click.echo("Stopping Kafka...", err=True)
    finally:
        kafka.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("Kafka stopped", err=True)


def _supervise(kafka: LocalKafka) -> None:
    """Run until interrupted, restarting each node that dies (after RESTART_DELAY_S); give up
    with BrokerError on a node that keeps dying (RESTARTS_PER_NODE within RESTART_WINDOW_S)."""
    deaths: dict[int, list[float]] = {}
    while True:
        time.sleep(0.5)
        for node_id in kafka.dead_nodes():
            now = time.monotonic()
            recent = [t for t in deaths.get(node_id, []) if now - t < RESTART_WINDOW_S]
            deaths[node_id] = [*recent, now]
            code = kafka.exit_code(node_id)
            where = f"{kafka.data_dir}/node-{node_id}/broker.log"
            if len(deaths[node_id]) > RESTARTS_PER_NODE:
                raise BrokerError(
                    f"Kafka node {node_id} exited {len(deaths[node_id])} times within "
                    f"{RESTART_WINDOW_S:.0f}s (last exit code {code}); see {where}"
                )
            others = "the others keep serving; " if kafka.nodes > 1 else ""
            click.echo(
                f"Kafka node {node_id} exited with code {code}; {others}restarting it on its "
                f"data dir in {RESTART_DELAY_S:g}s (log: {where})",
                err=True,
            )
            log.warning("kafka node exited", extra={"node": node_id, "exit_code": code})
            time.sleep(RESTART_DELAY_S)
            try:
                kafka.start_node(node_id)
            except BrokerError as exc:  # counted as another death on the next round
                click.echo(f"Kafka node {node_id} did not come back: {exc}", err=True)
                continue
            click.echo(f"Kafka node {node_id} is back", err=True)


def _ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)

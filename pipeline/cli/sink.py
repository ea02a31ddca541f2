"""`ardary-pipeline sink`: run the warehouse sink consumer until SIGTERM/SIGINT.

Beside the consumer loop it serves /healthz, /readyz and /metrics on `--web-port`
(`pipeline.sinks.web`); the port is bound before the loop starts, so a port in use stops the
command with exit code 2 and one line.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading

import click

from pipeline.cli.connect import connect
from pipeline.cli.paths import warehouse_dir
from pipeline.errors import ConfigError
from pipeline.logs import configure_logging
from pipeline.settings import load_settings
from pipeline.sinks.runner import DEFAULT_GROUP, run_sink
from pipeline.sinks.telemetry import SinkTelemetry
from pipeline.sinks.web import BrokerProbe, SinkWebServer
from pipeline.tracing import start_tracing

__all__ = ["sink", "web_server"]

log = logging.getLogger("pipeline.sink")


def web_server(host: str, port: int, telemetry: SinkTelemetry, source: str) -> SinkWebServer:
    """The sink's web server bound to `host:port`; a port it cannot take is a ConfigError.

    `source` names where the port came from (`--web-port` or `SINK_WEB_PORT`).
    """
    try:
        return SinkWebServer(host, port, telemetry)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            why = "is already in use (another sink?)"
        elif exc.errno == errno.EACCES:
            why = "needs privileges this process does not have"
        else:
            why = f"cannot be bound: {exc.strerror or exc}"
        raise ConfigError(
            f"{source}: port {port} on {host} {why}; choose another with --web-port or "
            "SINK_WEB_PORT"
        ) from None


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
@click.option(
    "--web-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Port of /healthz, /readyz and /metrics (default: SINK_WEB_PORT, 8082).",
)
@click.option(
    "--web-host",
    default="0.0.0.0",  # noqa: S104 - a container's port must be reachable; see README
    show_default=True,
    help="Address the web endpoints listen on (0.0.0.0: every interface, as containers need).",
)
def sink(
    url: str | None,
    group: str,
    from_beginning: bool,
    max_idle: float | None,
    web_port: int | None,
    web_host: str,
) -> None:
    """Consume the pipeline's topics into the warehouse, exactly once."""
    overrides = {"warehouse_url": url} if url else {}
    settings = load_settings(**overrides)
    warehouse_dir(settings.warehouse_url, "--url" if url else "WAREHOUSE_URL")
    connect(settings)
    configure_logging()
    start_tracing("ardary-sink")  # only if the OTEL_* variables ask for it
    port = web_port if web_port is not None else settings.sink_web_port
    telemetry = SinkTelemetry(broker_up=BrokerProbe(settings.kafka_bootstrap_servers or ""))
    web = web_server(
        web_host, port, telemetry, "--web-port" if web_port is not None else "SINK_WEB_PORT"
    )
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        stop.set()  # the loop flushes what it holds, then exits

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with web:
        log.info("sink web endpoints listening", extra={"host": web_host, "port": web.port})
        stats = run_sink(
            settings,
            stop_event=stop,
            max_idle_s=max_idle,
            group=group,
            from_beginning=from_beginning,
            telemetry=telemetry,
        )
    click.echo(f"sink: {stats.records} records, {stats.rows} rows written")

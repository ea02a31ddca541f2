"""`ardary-pipeline ingress`: serve the callback ingress (granian, one worker) until Ctrl-C."""

from __future__ import annotations

import logging

import click

from pipeline.cli.connect import connect
from pipeline.cli.paths import state_dir
from pipeline.errors import ConfigError
from pipeline.ingress.server import DEFAULT_RUNTIME_THREADS, serve
from pipeline.logs import configure_logging
from pipeline.settings import load_settings

__all__ = ["ingress"]

log = logging.getLogger("pipeline.ingress")


@click.command()
@click.option(
    "--host",
    default="0.0.0.0",  # noqa: S104 - a container's port must be reachable; see README
    show_default=True,
    help="Address to listen on (0.0.0.0: every interface, as containers need).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option(
    "--threads",
    type=click.IntRange(1, 8),
    default=DEFAULT_RUNTIME_THREADS,
    show_default=True,
    help="granian runtime (I/O) threads.",
)
@click.option(
    "--interface",
    type=click.Choice(["rsgi", "asgi"]),
    default="rsgi",
    show_default=True,
    help="granian's interface to the app (asgi: for comparison; same behaviour).",
)
def ingress(host: str, port: int, threads: int, interface: str) -> None:
    """The callback ingress: Ardary's callbacks into Kafka (GET/POST /callbacks/{token}).

    Reads KAFKA_BOOTSTRAP_SERVERS, PIPELINE_TOPIC_PREFIX, PIPELINE_CALLBACK_TOKEN,
    SCHEMA_REGISTRY_URL and ARDARY_TIMEZONE from the environment.
    """
    settings = load_settings()
    configure_logging()
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS: required by the ingress")
    if settings.ingress_spool_dir is not None:
        # here, in the command's process: granian's worker would report it as a traceback
        state_dir(settings.ingress_spool_dir, "INGRESS_SPOOL_DIR")
    # a wrong setting stops here with one line; an unreachable broker only without a spool
    connect(settings, allow_unreachable=settings.ingress_spool_dir is not None)
    if settings.pipeline_callback_token is None:
        log.warning("PIPELINE_CALLBACK_TOKEN is not set: /callbacks is open to anyone (dev only)")
    log.info(
        "ingress listening",
        extra={"host": host, "port": port, "prefix": settings.pipeline_topic_prefix},
    )
    serve(
        "pipeline.ingress.app:app_from_env",
        host,
        port,
        factory=True,
        runtime_threads=threads,
        interface=interface,
    )

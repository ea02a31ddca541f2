"""The Faust app: one per worker process, with every stream of `pipeline.topics` declared once.

Agents live in their own modules and are attached by name (`register(app, streams, settings)`),
so `ardary-pipeline worker --agents outbound` imports and runs only what it is asked to.
Processing is at-least-once; agents make their effects idempotent by `id_sms_api`/`event_id`
(faust's `exactly_once` guarantee, built on Kafka transactions, is not used: idempotent effects
are simpler to prove under the crash tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from pipeline.agents.dashboard import register_dashboard
from pipeline.agents.web import register_web
from pipeline.errors import ConfigError
from pipeline.kafka.codec import AvroFaustCodec
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.transport import PipelineTransport
from pipeline.serde import codec_for
from pipeline.settings import Settings
from pipeline.topics import TOPICS

__all__ = ["AGENTS", "HEARTBEAT_INTERVAL_S", "SESSION_TIMEOUT_S", "Streams", "create_app"]

SESSION_TIMEOUT_S = 15.0
"""How long the group waits for a worker that stopped heartbeating (faust's default: 60 s)."""
HEARTBEAT_INTERVAL_S = 3.0
"""Five heartbeats per session: a worker is evicted only after missing all of them."""

# agent name -> "module:function" with signature register(app, streams, settings) -> None
AGENTS: dict[str, str] = {
    "correlate": "pipeline.agents.correlate:register",
    "metrics": "pipeline.agents.metrics:register",
    "optouts": "pipeline.agents.optouts:register",
    "outbound": "pipeline.agents.outbound:register",
    "contacts": "pipeline.agents.contacts:register",
}


@dataclass(frozen=True)
class Streams:
    """The Faust topics of the pipeline, looked up by their unprefixed names."""

    by_name: dict[str, Any]
    codec: AvroFaustCodec
    prefix: str

    def __getitem__(self, name: str) -> Any:
        return self.by_name[name]


def create_app(
    settings: Settings,
    *,
    app_id: str | None = None,
    data_dir: Path | None = None,
    web_port: int = 6066,
    web_host: str = "127.0.0.1",
    store: str = "rocksdb://",
    agents: Iterable[str] = (),
    replication: int | None = None,
) -> tuple[faust.App, Streams]:
    """Build the Faust app and attach the named agents; nothing connects until it starts.

    `replication` is the replication factor of the topics faust creates itself (table
    changelogs, the metrics contributions): the cluster's (`pipeline.kafka.admin`), else
    PIPELINE_REPLICATION_FACTOR, else 1.
    """
    client = KafkaClientConfig.from_settings(settings)
    app_id = app_id or f"{settings.pipeline_topic_prefix}workers"
    app = faust.App(
        app_id,
        broker=client.faust_broker(),
        broker_credentials=client.faust_credentials(),
        topic_replication_factor=replication or settings.pipeline_replication_factor or 1,
        store=store,
        datadir=str(data_dir or Path("data") / "faust"),
        topic_partitions=settings.pipeline_partitions,
        topic_allow_declare=True,
        producer_acks=-1,
        producer_linger_ms=5,
        consumer_auto_offset_reset="earliest",
        broker_commit_every=1000,
        broker_commit_interval=1.0,
        # A member that died without leaving (SIGKILL, or the cluster gone when it stopped)
        # holds every partition's rebalance until its session expires: 60 s by faust's
        # default, measured as a 52-s group join after the chaos run restarted the cluster.
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_S,
        web_enabled=True,
        web_port=web_port,
        web_bind=web_host,
        web_host=web_host,
        stream_wait_empty=False,
        table_cleanup_interval=30.0,
        key_serializer="raw",
        value_serializer="raw",
        # faust's own recovery can lose the first events after a rebalance (see the module)
        TableManager="pipeline.kafka.recovery:PipelineTableManager",
        # a group assigned before faust's new topics are in the metadata is made whole (see it)
        PartitionAssignor="pipeline.kafka.assignor:PipelinePartitionAssignor",
        # Avro values decoded in one call, not through faust's serializer registry (see it)
        Schema="pipeline.kafka.codec:AvroSchema",
    )
    # Before anything (topics, tables) asks the app for its transport; see the module.
    app.transport = PipelineTransport(app.conf.broker_consumer, app)
    codec = AvroFaustCodec(codec_for(settings))
    by_name = {
        spec.name: app.topic(
            spec.full_name(settings.pipeline_topic_prefix),
            key_type=bytes,
            key_serializer="raw",
            value_serializer=codec,
            partitions=settings.pipeline_partitions,
            internal=False,
        )
        for spec in TOPICS
    }
    streams = Streams(by_name=by_name, codec=codec, prefix=settings.pipeline_topic_prefix)
    register_web(app, streams, settings)
    register_dashboard(app)
    for name in agents:
        _registrar(name)(app, streams, settings)
    return app, streams


def _registrar(name: str) -> Callable[[faust.App, Streams, Settings], None]:
    target = AGENTS.get(name)
    if target is None:
        known = ", ".join(sorted(AGENTS)) or "none"
        raise ConfigError(f"--agents: unknown agent {name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    register: Callable[[faust.App, Streams, Settings], None] = getattr(
        importlib.import_module(module_name), attr
    )
    return register

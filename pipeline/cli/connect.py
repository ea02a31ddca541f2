"""Before a command starts: settings that name a reachable cluster (and registry), or one line.

Every command that talks to Kafka calls `connect` first: the brokers are reached once with the
configured security (`pipeline.kafka.preflight`), and the schema registry, when there is one,
is asked for the pipeline's schemas. A wrong password, an untrusted CA, a refused SASL
mechanism or registry login end the command within seconds with exit code 2 and one line
naming the setting (never its value); an unreachable broker with exit code 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import BrokerError, ConfigError
from pipeline.kafka.admin import replication_for
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.preflight import check_connection_sync
from pipeline.serde import ConfluentCodec, codec_for
from pipeline.settings import Settings

__all__ = ["Cluster", "connect"]


@dataclass(frozen=True, slots=True)
class Cluster:
    """What a command learned about the cluster it will use."""

    client: KafkaClientConfig
    brokers: int  # 0 when unreachable and the command may start anyway
    replication: int  # the replication factor of the topics the pipeline creates


def connect(settings: Settings, *, allow_unreachable: bool = False) -> Cluster:
    """Check the brokers and the registry answer with these settings.

    `allow_unreachable` (the ingress with its spool): a broker that does not answer is not an
    error — the command starts and connects later — but a wrong setting still is.
    """
    if not settings.kafka_bootstrap_servers:
        raise ConfigError(
            "KAFKA_BOOTSTRAP_SERVERS is not set (start a broker with `ardary-pipeline broker`)"
        )
    client = KafkaClientConfig.from_settings(settings)
    try:
        brokers = check_connection_sync(client)
    except BrokerError:
        if not allow_unreachable:
            raise
        brokers = 0
    codec = codec_for(settings)
    if isinstance(codec, ConfluentCodec):
        codec.check()
    return Cluster(client, brokers, replication_for(brokers, settings.pipeline_replication_factor))

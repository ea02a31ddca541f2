"""The cluster a benchmark runs on: the configured one (KAFKA_*), else a LocalKafka of its own.

A benchmark's own clients (producers, consumers, admin) take `BenchCluster.client`, the one
`KafkaClientConfig` of the pipeline; the worker, ingress and sink subprocesses it starts take
`BenchCluster.subprocess_env()`, the same settings as KAFKA_* variables. So a figure measured on
a secured cluster is measured with TLS and SASL on every connection, not just the pipeline's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.kafka.config import KafkaClientConfig
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import LocalKafka, Security

__all__ = ["KAFKA_CLIENT_VARIABLES", "BenchCluster", "bench_broker"]

KAFKA_CLIENT_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
)
"""The environment variables that say how a process reaches the cluster."""


@dataclass(frozen=True)
class BenchCluster:
    """How the benchmark and the processes it starts reach the cluster."""

    client: KafkaClientConfig
    env: Mapping[str, str] = field(repr=False)  # KAFKA_* of `client`, the password included
    brokers: int
    local: bool
    kafka: LocalKafka | None = field(default=None, repr=False)  # the local cluster, if started

    @property
    def bootstrap(self) -> str:
        return self.client.bootstrap

    def describe(self) -> str:
        """For the output: e.g. `3 brokers, SASL_SSL (SCRAM-SHA-512), local`."""
        security = self.client.security_protocol
        if self.client.uses_sasl:
            security += f" ({self.client.sasl_mechanism})"
        where = "local" if self.local else "KAFKA_BOOTSTRAP_SERVERS"
        return f"{self.brokers} broker{'s' if self.brokers != 1 else ''}, {security}, {where}"

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        """This process's environment with the cluster's KAFKA_* variables (no stale others)."""
        env = {k: v for k, v in os.environ.items() if k not in KAFKA_CLIENT_VARIABLES}
        return {**env, **self.env, **extra}

    def settings(self, **overrides: Any) -> Settings:
        """Settings naming this cluster (and `overrides`), for code run in this process."""
        client = self.client
        return load_settings(
            kafka_bootstrap_servers=client.bootstrap,
            kafka_security_protocol=client.security_protocol,
            kafka_sasl_mechanism=client.sasl_mechanism,
            kafka_sasl_username=client.sasl_username,
            kafka_sasl_password=client.sasl_password,
            kafka_ssl_ca_file=client.ssl_ca_file,
            kafka_ssl_cert_file=client.ssl_cert_file,
            kafka_ssl_key_file=client.ssl_key_file,
            **overrides,
        )


@contextlib.contextmanager
def bench_broker(
    nodes: int | None = None, security: Security | None = None
) -> Iterator[BenchCluster]:
    """Yield the cluster of KAFKA_BOOTSTRAP_SERVERS (and the other KAFKA_* variables), or a
    LocalKafka of `nodes` nodes with `security` started here and stopped on exit.

    `nodes`/`security` describe a local cluster: given with KAFKA_BOOTSTRAP_SERVERS set, they
    are a ConfigError rather than silently ignored.
    """
    from pipeline.kafka.preflight import check_connection_sync

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        if nodes is not None or security is not None:
            raise ConfigError(
                "--nodes/--security start a local cluster: unset KAFKA_BOOTSTRAP_SERVERS to "
                "use them, or leave them out to run on the configured cluster"
            )
        env = {k: os.environ[k] for k in KAFKA_CLIENT_VARIABLES if os.environ.get(k)}
        client = KafkaClientConfig.from_env(env)
        yield BenchCluster(client, env, check_connection_sync(client), local=False)
        return
    from pipeline.devtools.localkafka import LocalKafka

    with LocalKafka(nodes=nodes or 1, security=security or "plaintext") as kafka:
        env = kafka.client_settings()
        yield BenchCluster(
            KafkaClientConfig.from_env(env), env, kafka.nodes, local=True, kafka=kafka
        )

"""Client settings for every Kafka client of the pipeline, built once from `Settings`.

One `KafkaClientConfig` says where the brokers are and how to reach them (TLS, SASL); each
client library gets it in its own spelling: aiokafka (`aiokafka()`: the ingress producer, the
agents' own readers), kafka-python (`kafka_python()`: admin, sink, publisher, readers), faust
(`faust()`: the worker's broker URL and credentials) and librdkafka (`librdkafka()`: for
confluent-kafka). The SSL context is built once and shared. Secrets stay `SecretStr` until the
dict handed to a client is built, and no `repr` or error message of this module shows them.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.settings import Settings

__all__ = ["KafkaClientConfig", "client_config"]


@dataclass(frozen=True)
class KafkaClientConfig:
    """Bootstrap servers and security of the pipeline's Kafka clients."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaClientConfig:
        """The config of KAFKA_* settings; ConfigError if KAFKA_BOOTSTRAP_SERVERS is unset."""
        if not settings.kafka_bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set")
        return cls(
            bootstrap=settings.kafka_bootstrap_servers,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_ca_file=settings.kafka_ssl_ca_file,
            ssl_cert_file=settings.kafka_ssl_cert_file,
            ssl_key_file=settings.kafka_ssl_key_file,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaClientConfig:
        """The config of the KAFKA_* variables in `env` alone (not the process environment or
        `.env`), e.g. a local cluster's `client.env`."""

        def path(name: str) -> Path | None:
            return Path(env[name]) if env.get(name) else None

        password = env.get("KAFKA_SASL_PASSWORD")
        return cls(
            bootstrap=env["KAFKA_BOOTSTRAP_SERVERS"],
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM"),
            sasl_username=env.get("KAFKA_SASL_USERNAME"),
            sasl_password=SecretStr(password) if password else None,
            ssl_ca_file=path("KAFKA_SSL_CA_FILE"),
            ssl_cert_file=path("KAFKA_SSL_CERT_FILE"),
            ssl_key_file=path("KAFKA_SSL_KEY_FILE"),
        )

    @property
    def servers(self) -> list[str]:
        """The bootstrap servers as a list of `host:port`."""
        return [s.strip() for s in self.bootstrap.split(",") if s.strip()]

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (KAFKA_SSL_CA_FILE, else the system CAs; client cert if given)."""
        return _ssl_context(self.ssl_ca_file, self.ssl_cert_file, self.ssl_key_file, self.uses_ssl)

    def _password(self) -> str | None:
        return None if self.sasl_password is None else self.sasl_password.get_secret_value()

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
        }
        if self.uses_ssl:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self._password()
        return options

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's producer, consumer and admin client (the same
        names as aiokafka's: aiokafka took them from kafka-python)."""
        return self.aiokafka()

    def librdkafka(self) -> dict[str, Any]:
        """Configuration properties for librdkafka (confluent-kafka)."""
        options: dict[str, Any] = {
            "bootstrap.servers": ",".join(self.servers),
            "security.protocol": self.security_protocol.lower(),
        }
        if self.uses_ssl and self.ssl_ca_file is not None:
            options["ssl.ca.location"] = str(self.ssl_ca_file)
        if self.uses_ssl and self.ssl_cert_file is not None and self.ssl_key_file is not None:
            options["ssl.certificate.location"] = str(self.ssl_cert_file)
            options["ssl.key.location"] = str(self.ssl_key_file)
        if self.uses_sasl:
            options["sasl.mechanism"] = self.sasl_mechanism
            options["sasl.username"] = self.sasl_username
            options["sasl.password"] = self._password()
        return options

    def faust_broker(self) -> str:
        """faust's `broker` setting: one `kafka://host:port` per server."""
        return ";".join(f"kafka://{server}" for server in self.servers)

    def faust_credentials(self) -> Any:
        """faust's `broker_credentials`: SASL or SSL credentials, or None for PLAINTEXT."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self._password(),
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        if self.uses_ssl:
            return faust.SSLCredentials(self.ssl_context())
        return None


@functools.cache
def _ssl_context(
    ca_file: Path | None, cert_file: Path | None, key_file: Path | None, enabled: bool
) -> ssl.SSLContext | None:
    if not enabled:
        return None
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file is not None and key_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"KAFKA_SSL_CERT_FILE/KAFKA_SSL_KEY_FILE: cannot load the client certificate "
                f"({type(exc).__name__})"
            ) from None
    return context


def client_config(source: KafkaClientConfig | str) -> KafkaClientConfig:
    """A client config as given, or a bare bootstrap string as a PLAINTEXT one (local tools)."""
    return source if isinstance(source, KafkaClientConfig) else KafkaClientConfig(source)

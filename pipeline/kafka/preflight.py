"""Before a command starts its clients: can the brokers be reached, and with these settings?

Every Kafka client the pipeline uses reports a wrong password, an untrusted certificate or a
refused SASL mechanism the same way — "unable to bootstrap", after up to 30 s of retries —
and logs the real reason somewhere else. `check_connection` connects to a bootstrap server
once, step by step, the way the clients will (TCP, TLS, SASL, one metadata request), and turns
the first failure into one line that names the setting to fix, never its secret value:
`ConfigError` (exit 2) for a setting, `BrokerError` when no broker answers at all.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from pipeline.errors import BrokerError, ConfigError
from pipeline.kafka.config import KafkaClientConfig

__all__ = ["check_connection", "check_connection_sync"]

_CONNECT_S = 10.0


async def check_connection(config: KafkaClientConfig, within: float = 20.0) -> int:
    """Connect to the first answering bootstrap server; raise what is wrong (see module doc).

    Returns how many brokers the cluster lists.
    """
    unreachable: list[str] = []
    async with asyncio.timeout(within):
        for server in config.servers:
            host, _, port = server.rpartition(":")
            try:
                conn = await _connect(config, host.strip("[]"), int(port))
            except (OSError, TimeoutError) as exc:
                if isinstance(exc, ssl.SSLError):
                    raise _tls_error(config, server, exc) from None
                unreachable.append(server)
                continue
            try:
                return await _metadata(conn, config, server)
            finally:
                conn.close()
    raise BrokerError(f"cannot reach Kafka at {', '.join(unreachable)} (KAFKA_BOOTSTRAP_SERVERS)")


def check_connection_sync(config: KafkaClientConfig, within: float = 20.0) -> int:
    """`check_connection` for synchronous commands (no event loop running)."""
    return asyncio.run(check_connection(config, within))


async def _connect(config: KafkaClientConfig, host: str, port: int) -> Any:
    """An authenticated aiokafka connection; client exceptions mapped to settings."""
    from aiokafka import errors
    from aiokafka.conn import create_conn

    options = config.aiokafka()
    try:
        return await asyncio.wait_for(
            create_conn(
                host,
                port,
                client_id="ardary-preflight",
                request_timeout_ms=int(_CONNECT_S * 1000),
                ssl_context=options.get("ssl_context"),
                security_protocol=config.security_protocol,
                sasl_mechanism=config.sasl_mechanism or "PLAIN",
                sasl_plain_username=config.sasl_username,
                sasl_plain_password=options.get("sasl_plain_password"),
            ),
            _CONNECT_S,
        )
    except errors.SaslAuthenticationFailed:
        raise ConfigError(
            f"KAFKA_SASL_PASSWORD: the broker refused the credentials of "
            f"KAFKA_SASL_USERNAME={config.sasl_username!r} ({config.sasl_mechanism})"
        ) from None
    except errors.UnsupportedSaslMechanismError:
        raise ConfigError(
            f"KAFKA_SASL_MECHANISM: the broker does not accept {config.sasl_mechanism}"
        ) from None
    except errors.KafkaConnectionError as exc:
        if isinstance(exc.__cause__, asyncio.IncompleteReadError) or "closed" in str(exc):
            raise _protocol_mismatch(config, f"{host}:{port}") from None
        raise OSError(str(exc)) from None


async def _metadata(conn: Any, config: KafkaClientConfig, server: str) -> int:
    """One metadata request (a listener expecting another protocol closes the connection);
    returns how many brokers it lists."""
    from aiokafka import errors
    from aiokafka.protocol.metadata import MetadataRequest

    try:
        answer = await asyncio.wait_for(conn.send(MetadataRequest([])), _CONNECT_S)
    except (errors.KafkaError, OSError, TimeoutError):
        raise _protocol_mismatch(config, server) from None
    return len(answer.brokers)


def _protocol_mismatch(config: KafkaClientConfig, server: str) -> ConfigError:
    return ConfigError(
        f"KAFKA_SECURITY_PROTOCOL: {server} closed the connection: its listener expects "
        f"another protocol than {config.security_protocol}"
    )


def _tls_error(config: KafkaClientConfig, server: str, exc: ssl.SSLError) -> ConfigError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = str(config.ssl_ca_file) if config.ssl_ca_file else "the system CAs (unset)"
        return ConfigError(
            f"KAFKA_SSL_CA_FILE: the certificate of {server} is not trusted by {trusted} "
            f"({exc.verify_message})"
        )
    return ConfigError(
        f"KAFKA_SECURITY_PROTOCOL: the TLS handshake with {server} failed ({exc.reason}): "
        f"does its listener speak {config.security_protocol}?"
    )

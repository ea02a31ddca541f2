"""Looking at local Kafka nodes from outside: a free port, a log's tail, an old JVM, and how
many brokers the cluster lists (the readiness test of `LocalKafka`)."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

from pipeline.devtools.kafkajars import INSTALL_HINT, KAFKA_VERSION
from pipeline.devtools.kafkanode import HOST
from pipeline.errors import EnvironmentMissing

__all__ = ["brokers_listed", "log_tail", "port_is_free", "raise_for_java"]


def port_is_free(port: int) -> bool:
    """Whether a listener could bind `port` on the loopback address now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a node's log, for an error message ("" when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def raise_for_java(output: str) -> None:
    """A one-line EnvironmentMissing when Kafka's tools say the JVM is too old."""
    if "UnsupportedClassVersionError" in output:
        raise EnvironmentMissing(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer and `java` on PATH is older: "
            f"{INSTALL_HINT}"
        )


def brokers_listed(client_settings: dict[str, str], timeout: float) -> int:
    """How many brokers the cluster's metadata lists (0 while it does not answer)."""
    from kafka.admin import KafkaAdminClient

    from pipeline.kafka.config import KafkaClientConfig

    config = KafkaClientConfig.from_env(client_settings)
    ms = max(int(timeout * 1000), 500)
    try:
        admin = KafkaAdminClient(
            **config.kafka_python(),
            client_id="ardary-localkafka-probe",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=200,
        )
    except Exception:
        return 0
    try:
        return len(admin.describe_cluster().get("brokers") or ())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            admin.close()

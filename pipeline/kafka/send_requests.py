"""Publishing send requests for upstream apps: a synchronous producer onto sms.send-requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo

from pipeline.core.send_requests import parse_send_request
from pipeline.kafka.acked import AckedSends
from pipeline.kafka.config import KafkaClientConfig, client_config
from pipeline.kafka.errors import kafka_errors
from pipeline.records import SendRequest
from pipeline.serde import Codec, make_codec
from pipeline.topics import record_key, topic_for_record

__all__ = ["SendRequestPublisher"]


class SendRequestPublisher:
    """A synchronous, batching publisher of send requests (kafka-python, acks=all, idempotent).

    `publish` returns the request's id_sms_api as soon as the record is queued; `flush` (and
    leaving the `with` block) waits until the broker acknowledged every queued record and
    raises BrokerError if any failed. A record whose batch failed with a resendable error (the
    broker away too long, or its producer id refused: kafka-python then bumps the id's epoch)
    is sent again by `flush` (`AckedSends`); the outbound agent sends an `id_sms_api` once
    however often it arrives.
    """

    def __init__(
        self,
        client: KafkaClientConfig | str,
        *,
        prefix: str = "ardary.",
        login: str | None = None,
        timezone: str = "Europe/Paris",
        codec: Codec | None = None,
        linger_ms: int = 20,
    ) -> None:
        from kafka import KafkaProducer

        self.topic = topic_for_record(SendRequest).full_name(prefix)
        self.login = login
        self.tz = ZoneInfo(timezone)
        self.codec = codec or make_codec(None)
        config = client_config(client)
        with kafka_errors(f"cannot reach Kafka at {config.bootstrap}"):
            producer = KafkaProducer(
                **config.kafka_python(),
                client_id="ardary-publisher",
                acks="all",
                enable_idempotence=True,
                linger_ms=linger_ms,
                batch_size=256 * 1024,
                compression_type=None,
            )
        self._sends = AckedSends(producer)

    def publish(self, request: SendRequest | Mapping[str, Any]) -> str:
        """Queue one request (a SendRequest, or a dict validated by parse_send_request)."""
        if not isinstance(request, SendRequest):
            request = parse_send_request(
                request, now=datetime.now(UTC), default_login=self.login, tz=self.tz
            )
        self._sends.send(self.topic, self.codec.encode(request), record_key(request))
        return request.id_sms_api

    def publish_many(self, requests: Iterable[SendRequest | Mapping[str, Any]]) -> list[str]:
        """Queue every request, then flush; returns their ids in order."""
        ids = [self.publish(r) for r in requests]
        self.flush()
        return ids

    def flush(self, timeout: float = 60) -> None:
        """Wait until every queued record is acknowledged; BrokerError if any was not."""
        self._sends.flush(timeout)

    def close(self) -> None:
        self._sends.producer.close(timeout=30)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
        return False

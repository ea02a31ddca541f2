"""The dead-letter topic: read it back, and re-drive its records through the ingress parser.

A dead letter keeps the raw request byte for byte (method, query string, body, content type), so
once the parser is fixed its records can be re-driven through exactly the code path the ingress
uses (`decode_params` → `parse_callbacks`), with the original `received_at`. Re-driving is
idempotent downstream: a callback gets the same `event_id` however often it is replayed.

`replay` remembers how far it got in the consumer group `<prefix>dead-letter-replay`; run it with
`--from-beginning` to re-drive every dead letter again (e.g. after a second parser fix).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pipeline.ardary.callbacks import parse_callbacks
from pipeline.errors import CallbackError, ConfigError, DecodeError
from pipeline.ingress.decode import RawRequest, decode_params
from pipeline.kafka.acked import AckedSends
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.errors import kafka_errors
from pipeline.records import DeadLetter
from pipeline.serde import Codec, codec_for
from pipeline.settings import Settings, load_settings
from pipeline.topics import record_key, spec_for, topic_for_record

__all__ = ["DeadLetterReader", "ReplayReport", "dead_letter_settings", "replay_dead_letters"]

DEAD_LETTER_TOPIC = "callbacks.dead-letter"


@dataclass
class ReplayReport:
    """What a replay did: callbacks re-published, and the dead letters still not understood."""

    dead_letters: int = 0
    replayed: int = 0
    republished: int = 0
    still_failing: list[tuple[int, str, str]] = field(
        default_factory=list
    )  # offset, reason, detail


def dead_letter_settings() -> Settings:
    """The settings, which must name a broker (ConfigError otherwise)."""
    settings = load_settings()
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS is not set")
    return settings


class DeadLetterReader:
    """Reads the dead-letter topic to its end; with a group, `commit()` remembers how far."""

    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        *,
        group: str | None,
        from_beginning: bool,
        idle_ms: int = 2000,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition

        assert settings.kafka_bootstrap_servers
        self.codec = codec
        topic = spec_for(DEAD_LETTER_TOPIC).full_name(settings.pipeline_topic_prefix)
        with kafka_errors(f"cannot read {topic}"):
            self.consumer = KafkaConsumer(
                **KafkaClientConfig.from_settings(settings).kafka_python(),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                consumer_timeout_ms=idle_ms,
            )
            partitions = self.consumer.partitions_for_topic(topic) or set()
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            self.consumer.assign(assigned)
            if from_beginning and assigned:
                self.consumer.seek_to_beginning(*assigned)

    def __iter__(self) -> Iterator[tuple[int, int, DeadLetter | None]]:
        """(partition, offset, the dead letter or None when undecodable) until idle."""
        for message in self.consumer:
            try:
                record = self.codec.decode(message.value)
            except DecodeError:
                record = None
            letter = record if isinstance(record, DeadLetter) else None
            yield message.partition, message.offset, letter

    def commit(self) -> None:
        self.consumer.commit()

    def close(self) -> None:
        self.consumer.close(autocommit=False)


def replay_dead_letters(settings: Settings, *, from_beginning: bool = False) -> ReplayReport:
    """Re-drive dead letters through the ingress parser; publish what it now understands."""
    from kafka import KafkaProducer

    assert settings.kafka_bootstrap_servers
    codec = codec_for(settings)
    with kafka_errors(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}"):
        producer = KafkaProducer(
            **KafkaClientConfig.from_settings(settings).kafka_python(),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
    sends = AckedSends(producer)
    report = ReplayReport()
    reader = DeadLetterReader(
        settings,
        codec,
        group=f"{settings.pipeline_topic_prefix}dead-letter-replay",
        from_beginning=from_beginning,
    )
    try:
        with kafka_errors("dead-letter replay failed", detail=True):
            for _partition, offset, letter in reader:
                report.dead_letters += 1
                if letter is None:
                    report.still_failing.append((offset, "undecodable", "not a DeadLetter record"))
                    continue
                raw = RawRequest(letter.method, letter.raw, letter.body, letter.content_type)
                try:
                    parsed = parse_callbacks(
                        decode_params(raw), received_at=letter.received_at, tz=settings.timezone
                    )
                except CallbackError as exc:
                    report.still_failing.append((offset, exc.reason, exc.detail))
                    continue
                for record in parsed:
                    topic = topic_for_record(type(record)).full_name(settings.pipeline_topic_prefix)
                    sends.send(topic, codec.encode(record), record_key(record))
                    report.republished += 1
                report.replayed += 1
            sends.flush(timeout=30)  # everything re-published is acknowledged (or raises) ...
            reader.commit()  # ... before the replay position moves past it
    finally:
        reader.close()
        producer.close(timeout=10)
    return report

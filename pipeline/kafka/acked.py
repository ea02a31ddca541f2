"""kafka-python sends that are acknowledged or reported, never dropped: the sync producers'
(`publish`, dead-letter replay) one way to send.

kafka-python's `flush()` waits for every queued record but does not say which failed, and a
record whose batch failed is gone. `AckedSends` keeps each failure; `flush()` sends the
resendable ones again (kafka-python bumps its producer id's epoch after a sequence error, so
the resend goes through: `idempotence.resendable`) and raises BrokerError for what still fails.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import BrokerError
from pipeline.kafka.errors import kafka_errors
from pipeline.kafka.idempotence import resendable

__all__ = ["AckedSends"]


class AckedSends:
    """Sends through a kafka-python `KafkaProducer`; `flush` returns once all are acknowledged."""

    RESEND_ROUNDS = 3

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self._failed: list[tuple[str, bytes | None, bytes | None, Exception]] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None) -> None:
        """Queue one record (BrokerError if it cannot even be queued)."""
        with kafka_errors("cannot publish"):
            future = self.producer.send(topic, value, key=key)
        future.add_errback(lambda exc: self._failed.append((topic, value, key, exc)))

    def flush(self, timeout: float = 60) -> None:
        """Wait until every queued record is acknowledged, sending failed ones again (at most
        RESEND_ROUNDS times); BrokerError naming how many were not."""
        for round_ in range(self.RESEND_ROUNDS + 1):
            with kafka_errors("publish flush failed"):
                self.producer.flush(timeout=timeout)
            failed, self._failed = self._failed, []
            if not failed:
                return
            if round_ == self.RESEND_ROUNDS or not all(resendable(f[3]) for f in failed):
                first = failed[0][3]
                raise BrokerError(
                    f"{len(failed)} record(s) not acknowledged: {type(first).__name__}"
                )
            for topic, value, key, _ in failed:
                self.send(topic, value, key)
